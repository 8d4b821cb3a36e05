"""Procedural street-scene layouts, rasterised with a z-buffer (private part of `streets`).

A pinhole camera at height `h_c` looks along +z over a flat ground plane; the horizon is the image row
`y_h`, the vanishing point the column `x_v`.  A ground point (X, z) projects to column
`x_v + f X / z` and row `y_h + f h_c / z`; a point at height Y to row `y_h + f (h_c - Y) / z`.

Everything is painted into a z-buffer: ground (per-pixel depth), vertical planes parallel to the road
(building facades, walls, fences, hedges; per-column depth), a distant skyline (constant depth) and
sprites standing on the ground (constant depth, sizes scale with 1/z).  The label map is whatever won the
depth test, so it is exact by construction.  Besides the label, the painter records what a style needs to
colour the scene without knowing the geometry: depth, texture coordinates (metres), a part code (glass,
tyre, lamp, lane mark, ...), a per-instance random value, the surface orientation and shadow zones.
"""

import dataclasses

import numpy as np

from mgml_tf.synthetic.labels import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    MOTORCYCLE,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    TRAIN,
    TRUCK,
    VEGETATION,
    WALL,
)

NONE = 255  # "transparent" in sprite class maps

# Part codes: how a pixel of a class is coloured (the class label never depends on them).
(
    BODY,
    GLASS,
    TYRE,
    MARK,
    FACE,
    SKIN,
    DARK,
    WINDOW,
    LAMP_OFF,
    LAMP_RED,
    LAMP_AMBER,
    LAMP_GREEN,
    HEADLIGHT,
    TAILLIGHT,
    CLOTH2,
    STREETLAMP,
    FACE2,
) = range(17)
NUM_PARTS = 17
EMISSIVE_PARTS = (LAMP_RED, LAMP_AMBER, LAMP_GREEN, HEADLIGHT, TAILLIGHT, STREETLAMP)

# Surface orientation codes (for directional lighting).
FLAT, FACES_RIGHT, FACES_LEFT, FACES_CAMERA = range(4)

# Shadow-zone bits.
SHADOW_LEFT, SHADOW_RIGHT, SHADOW_CONTACT = 1, 2, 4


@dataclasses.dataclass
class Scene:
    """A rasterised layout: everything `stylize` needs, all arrays [H, W]."""

    label: np.ndarray  # uint8 train ids 0..18
    depth: np.ndarray  # float32 metres; inf for sky
    u: np.ndarray  # float32 texture coordinate (metres)
    v: np.ndarray  # float32 texture coordinate (metres)
    part: np.ndarray  # uint8 part code
    var: np.ndarray  # float32 in [0, 1): per-instance (per-window for windows) random value
    facing: np.ndarray  # uint8 orientation code
    shadow: np.ndarray  # uint8 shadow-zone bits
    horizon: float  # row of the horizon (may be fractional)


class _Canvas:
    def __init__(self, h, w):
        self.h, self.w = h, w
        self.label = np.full((h, w), SKY, np.uint8)
        self.depth = np.full((h, w), np.inf, np.float32)
        self.u = np.zeros((h, w), np.float32)
        self.v = np.zeros((h, w), np.float32)
        self.part = np.zeros((h, w), np.uint8)
        self.var = np.zeros((h, w), np.float32)
        self.facing = np.zeros((h, w), np.uint8)
        self.shadow = np.zeros((h, w), np.uint8)

    def paint(self, r0, c0, cls, part, z, u, v, var, facing):
        """Paint a block at rows r0.., cols c0..; `cls` [h, w] uses NONE for transparent pixels.

        part, z, u, v, var: scalars, rows [1, w], columns [h, 1] or full [h, w] blocks.
        """
        hh, ww = cls.shape
        sl = (slice(r0, r0 + hh), slice(c0, c0 + ww))
        dep = self.depth[sl]
        m = cls != NONE
        m &= z < dep
        if not m.any():
            return
        np.copyto(self.label[sl], cls, where=m)
        np.copyto(dep, z, where=m, casting="unsafe")
        np.copyto(self.part[sl], part, where=m, casting="unsafe")
        np.copyto(self.u[sl], u, where=m, casting="unsafe")
        np.copyto(self.v[sl], v, where=m, casting="unsafe")
        np.copyto(self.var[sl], var, where=m, casting="unsafe")
        np.copyto(self.facing[sl], facing, where=m, casting="unsafe")
        np.copyto(self.shadow[sl], 0, where=m, casting="unsafe")


def _hash01(a, b):
    """Deterministic pseudo-random value in [0, 1) of two integer-valued arrays."""
    x = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return (x - np.floor(x)).astype(np.float32)


class _Camera:
    def __init__(self, rng, h, w):
        self.h, self.w = h, w
        self.f = 0.55 * w * rng.uniform(0.9, 1.1)
        self.y_h = h * rng.uniform(0.36, 0.47)
        self.x_v = w * rng.uniform(0.40, 0.60)
        self.h_c = rng.uniform(1.3, 1.9)
        self.xc = np.arange(w, dtype=np.float32) + 0.5  # pixel centres
        self.yc = np.arange(h, dtype=np.float32) + 0.5

    def row(self, y_world, z):
        return self.y_h + self.f * (self.h_c - y_world) / z

    def col(self, x_world, z):
        return self.x_v + self.f * x_world / z


# ----------------------------------------------------------------------------------------------------
# Sprite shapes.  Each takes metric coordinates a (metres from the sprite's left edge, shape [1, w]),
# b (metres from its top, shape [h, 1]), the sprite size and a parameter dict, and returns
# (cls, part) arrays [h, w] with NONE where transparent.  Later assignments are in front.
# ----------------------------------------------------------------------------------------------------


def _new(a, b):
    shape = (b.shape[0], a.shape[1])
    return np.full(shape, NONE, np.uint8), np.zeros(shape, np.uint8)


def _rect(a, b, a0, a1, b0, b1):
    return (a >= a0) & (a < a1) & (b >= b0) & (b < b1)


def _ellipse(a, b, ca, cb, ra, rb):
    return ((a - ca) / ra) ** 2 + ((b - cb) / rb) ** 2 <= 1.0


def _segment(a, b, p, q, r):
    """Pixels within distance r of the segment p-q (points as (a, b))."""
    pa, pb = p
    da, db = q[0] - pa, q[1] - pb
    ll = da * da + db * db + 1e-9
    t = np.clip(((a - pa) * da + (b - pb) * db) / ll, 0.0, 1.0)
    return (a - pa - t * da) ** 2 + (b - pb - t * db) ** 2 <= r * r


def _set(cls, part, mask, c, p=BODY):
    cls[mask] = c
    part[mask] = p


def _shape_person(a, b, wm, hm, p):
    cls, part = _new(a, b)
    c = wm / 2
    head_r = 0.115 * hm / 1.75
    legs_apart = p["stride"]
    hip = 0.52 * hm
    _set(cls, part, _segment(a, b, (c - 0.07, hip), (c - 0.07 - legs_apart, hm - 0.04), 0.075), PERSON, CLOTH2)
    _set(cls, part, _segment(a, b, (c + 0.07, hip), (c + 0.07 + legs_apart, hm - 0.04), 0.075), PERSON, CLOTH2)
    _set(cls, part, _rect(a, b, c - 0.19, c + 0.19, 0.17 * hm, 0.56 * hm), PERSON, BODY)
    _set(cls, part, _segment(a, b, (c - 0.21, 0.2 * hm), (c - 0.25 - legs_apart * 0.5, 0.52 * hm), 0.05), PERSON, BODY)
    _set(cls, part, _segment(a, b, (c + 0.21, 0.2 * hm), (c + 0.25 + legs_apart * 0.5, 0.52 * hm), 0.05), PERSON, BODY)
    _set(cls, part, _ellipse(a, b, c, head_r + 0.01, head_r * 0.85, head_r), PERSON, SKIN)
    if p["bag"]:
        _set(cls, part, _rect(a, b, c + 0.17, c + 0.3, 0.38 * hm, 0.55 * hm), PERSON, DARK)
    return cls, part


def _wheel(cls, part, a, b, ca, cb, r, c, solid):
    d2 = (a - ca) ** 2 + (b - cb) ** 2
    if solid:
        _set(cls, part, d2 <= r * r, c, TYRE)
        _set(cls, part, d2 <= (0.45 * r) ** 2, c, BODY)
    else:
        _set(cls, part, (d2 <= r * r) & (d2 >= (0.8 * r) ** 2), c, TYRE)
        _set(cls, part, _segment(a, b, (ca - r, cb), (ca + r, cb), 0.012), c, DARK)
        _set(cls, part, _segment(a, b, (ca, cb - r), (ca, cb + r), 0.012), c, DARK)


def _shape_two_wheeler(a, b, wm, hm, p):
    """Bicycle or motorcycle in side view, facing right, optionally with a rider."""
    cls, part = _new(a, b)
    motor = p["motor"]
    vc = MOTORCYCLE if motor else BICYCLE
    r = 0.32 if motor else 0.34
    gy = hm - r  # hub row
    rear, front = (0.05 + r, gy), (wm - 0.05 - r, gy)
    if motor:
        _wheel(cls, part, a, b, rear[0], gy, r, vc, True)
        _wheel(cls, part, a, b, front[0], gy, r, vc, True)
        seat_b = hm - 0.85
        _set(cls, part, _ellipse(a, b, 0.5 * wm, hm - 0.62, 0.36 * wm, 0.2), vc, BODY)
        _set(cls, part, _rect(a, b, 0.35 * wm, 0.62 * wm, hm - 0.55, hm - 0.3), vc, DARK)
        _set(cls, part, _ellipse(a, b, 0.38 * wm, seat_b + 0.08, 0.2 * wm, 0.07), vc, DARK)
        _set(cls, part, _segment(a, b, front, (front[0] - 0.25, hm - 1.05), 0.04), vc, DARK)
        _set(cls, part, _ellipse(a, b, front[0] - 0.12, hm - 0.9, 0.07, 0.06), vc, HEADLIGHT)
        handle = (front[0] - 0.3, hm - 1.08)
    else:
        _wheel(cls, part, a, b, rear[0], gy, r, vc, False)
        _wheel(cls, part, a, b, front[0], gy, r, vc, False)
        crank = (0.47 * wm, gy)
        seat = (0.4 * wm, hm - 0.95)
        head = (front[0] - 0.12, hm - 0.95)
        for p0, p1 in ((rear, crank), (rear, seat), (crank, seat), (crank, head), (seat, head), (head, front)):
            _set(cls, part, _segment(a, b, p0, p1, 0.03), vc, BODY)
        handle = (head[0] - 0.05, hm - 1.1)
        _set(cls, part, _segment(a, b, head, handle, 0.025), vc, DARK)
        seat_b = hm - 1.0
    if p["rider"]:
        hip = (0.4 * wm, seat_b - 0.05)
        shoulder = (0.4 * wm + (0.28 if motor else 0.3), seat_b - 0.58)
        knee = (0.55 * wm, seat_b + (0.05 if motor else 0.2))
        foot = (0.5 * wm, hm - 0.3 if motor else gy)
        _set(cls, part, _segment(a, b, hip, knee, 0.08), RIDER, CLOTH2)
        _set(cls, part, _segment(a, b, knee, foot, 0.07), RIDER, CLOTH2)
        _set(cls, part, _segment(a, b, hip, shoulder, 0.15), RIDER, BODY)
        _set(cls, part, _segment(a, b, shoulder, handle, 0.05), RIDER, BODY)
        hr = 0.13 if motor else 0.11
        _set(
            cls,
            part,
            _ellipse(a, b, shoulder[0] + 0.05, shoulder[1] - 0.17, hr, hr * 1.1),
            RIDER,
            DARK if motor else SKIN,
        )
    return cls, part


def _shape_car_rear(a, b, wm, hm, p):
    cls, part = _new(a, b)
    c = p.get("cls", CAR)
    cab_top, cab_bot = 0.04 * hm, 0.47 * hm
    slope = (a - wm / 2) / (wm / 2)  # -1..1
    cab = (b >= cab_top) & (b < cab_bot) & (np.abs(slope) < 0.78 + 0.16 * (b - cab_top) / (cab_bot - cab_top))
    _set(cls, part, cab, c, BODY)
    glass = (
        (b >= cab_top + 0.05 * hm)
        & (b < cab_bot - 0.03 * hm)
        & (np.abs(slope) < 0.68 + 0.16 * (b - cab_top) / (cab_bot - cab_top))
    )
    _set(cls, part, glass, c, GLASS)
    _set(cls, part, _rect(a, b, 0, wm, cab_bot - 0.01, 0.86 * hm), c, BODY)
    _set(cls, part, _rect(a, b, 0.02 * wm, 0.98 * wm, 0.76 * hm, 0.84 * hm), c, DARK)
    _set(cls, part, _rect(a, b, 0.06 * wm, 0.22 * wm, 0.8 * hm, hm), c, TYRE)
    _set(cls, part, _rect(a, b, 0.78 * wm, 0.94 * wm, 0.8 * hm, hm), c, TYRE)
    lamp = HEADLIGHT if p["front"] else TAILLIGHT
    _set(cls, part, _rect(a, b, 0.03 * wm, 0.17 * wm, 0.52 * hm, 0.62 * hm), c, lamp)
    _set(cls, part, _rect(a, b, 0.83 * wm, 0.97 * wm, 0.52 * hm, 0.62 * hm), c, lamp)
    _set(cls, part, _rect(a, b, 0.38 * wm, 0.62 * wm, 0.64 * hm, 0.74 * hm), c, FACE)
    return cls, part


def _shape_car_side(a, b, wm, hm, p):
    cls, part = _new(a, b)
    r = 0.33
    body = _rect(a, b, 0, wm, 0.42 * hm, hm - 0.18) & _ellipse(a, b, wm / 2, 0.62 * hm, wm * 0.56, 0.45 * hm)
    _set(cls, part, body, CAR, BODY)
    t = np.clip((b - 0.05 * hm) / (0.4 * hm), 0, 1)
    cab = (b >= 0.05 * hm) & (b < 0.45 * hm) & (a > (0.28 - 0.1 * t) * wm) & (a < (0.7 + 0.12 * t) * wm)
    _set(cls, part, cab, CAR, BODY)
    win = (b >= 0.1 * hm) & (b < 0.4 * hm) & (a > (0.31 - 0.09 * t) * wm) & (a < (0.67 + 0.1 * t) * wm)
    win &= np.abs(a - 0.5 * wm) > 0.03
    _set(cls, part, win, CAR, GLASS)
    for ca in (0.2 * wm, 0.8 * wm):
        _wheel(cls, part, a, b, ca, hm - r, r, CAR, True)
    head, tail = (HEADLIGHT, TAILLIGHT) if p["right"] else (TAILLIGHT, HEADLIGHT)
    _set(cls, part, _rect(a, b, wm - 0.12, wm, 0.5 * hm, 0.6 * hm) & body, CAR, head)
    _set(cls, part, _rect(a, b, 0, 0.12, 0.5 * hm, 0.6 * hm) & body, CAR, tail)
    return cls, part


def _shape_box_rear(a, b, wm, hm, p):
    """Truck (closed cargo box) or bus (rear/front window) seen from behind or in front."""
    cls, part = _new(a, b)
    c = p["cls"]
    if c == BUS:
        _set(
            cls,
            part,
            _rect(a, b, 0, wm, 0.02 * hm, 0.9 * hm) & _ellipse(a, b, wm / 2, 0.5 * hm, 0.62 * wm, 0.62 * hm),
            c,
            BODY,
        )
        if p["front"]:
            _set(cls, part, _rect(a, b, 0.06 * wm, 0.94 * wm, 0.2 * hm, 0.6 * hm), c, GLASS)
            _set(cls, part, _rect(a, b, 0.2 * wm, 0.8 * wm, 0.06 * hm, 0.15 * hm), c, FACE2)
        else:
            _set(cls, part, _rect(a, b, 0.1 * wm, 0.9 * wm, 0.12 * hm, 0.42 * hm), c, GLASS)
        lamp_b = 0.7 * hm
    else:
        _set(cls, part, _rect(a, b, 0, wm, 0.0, 0.8 * hm), c, BODY)
        _set(cls, part, _rect(a, b, 0.49 * wm, 0.51 * wm, 0.02 * hm, 0.78 * hm), c, DARK)
        if p["front"]:
            _set(cls, part, _rect(a, b, 0.08 * wm, 0.92 * wm, 0.35 * hm, 0.58 * hm), c, GLASS)
        _set(cls, part, _rect(a, b, 0.05 * wm, 0.95 * wm, 0.8 * hm, 0.88 * hm), c, DARK)
        lamp_b = 0.72 * hm
    _set(cls, part, _rect(a, b, 0.04 * wm, 0.24 * wm, 0.86 * hm, hm), c, TYRE)
    _set(cls, part, _rect(a, b, 0.76 * wm, 0.96 * wm, 0.86 * hm, hm), c, TYRE)
    lamp = HEADLIGHT if p["front"] else TAILLIGHT
    _set(cls, part, _rect(a, b, 0.04 * wm, 0.14 * wm, lamp_b, lamp_b + 0.06 * hm), c, lamp)
    _set(cls, part, _rect(a, b, 0.86 * wm, 0.96 * wm, lamp_b, lamp_b + 0.06 * hm), c, lamp)
    return cls, part


def _shape_truck_side(a, b, wm, hm, p):
    cls, part = _new(a, b)
    cab_w = 2.2
    right = p["right"]
    ca = a if right else wm - a  # cab at the right end when moving right
    _set(cls, part, _rect(ca, b, 0, wm - cab_w - 0.15, 0, 0.82 * hm), TRUCK, BODY)
    cab = _rect(ca, b, wm - cab_w, wm, 0.3 * hm, 0.85 * hm)
    _set(cls, part, cab, TRUCK, FACE2)
    _set(cls, part, _rect(ca, b, wm - cab_w + 0.4, wm - 0.25, 0.36 * hm, 0.55 * hm), TRUCK, GLASS)
    _set(cls, part, _rect(ca, b, 0.2, wm - 0.2, 0.8 * hm, 0.86 * hm), TRUCK, DARK)
    r = 0.5
    for w_a in (1.2, 2.3, wm - 1.2):
        _wheel(cls, part, ca, b, w_a, hm - r, r, TRUCK, True)
    return cls, part


def _shape_bus_side(a, b, wm, hm, p):
    cls, part = _new(a, b)
    _set(
        cls,
        part,
        _rect(a, b, 0, wm, 0.03 * hm, hm - 0.25) & _ellipse(a, b, wm / 2, 0.5 * hm, 0.54 * wm, 0.75 * hm),
        BUS,
        BODY,
    )
    band = _rect(a, b, 0.3, wm - 0.3, 0.18 * hm, 0.55 * hm)
    panes = np.mod(a, 1.6) > 0.12
    _set(cls, part, band & panes, BUS, GLASS)
    door_a = 1.2 if p["right"] else wm - 2.2
    for da in (door_a, wm / 2 - 0.5):
        _set(cls, part, _rect(a, b, da + 0.05, da + 1.0, 0.18 * hm, hm - 0.3), BUS, GLASS)
    _set(cls, part, _rect(a, b, 0, wm, 0.62 * hm, 0.68 * hm), BUS, FACE2)
    r = 0.5
    for w_a in (2.5, wm - 2.8):
        _wheel(cls, part, a, b, w_a, hm - r, r, BUS, True)
    return cls, part


def _shape_train_side(a, b, wm, hm, p):
    cls, part = _new(a, b)
    car_len = p["car_len"]
    _set(
        cls,
        part,
        _rect(a, b, 0, wm, 0.12 * hm, hm - 0.3) & _ellipse(a, b, wm / 2, 0.55 * hm, 0.52 * wm, 0.9 * hm),
        TRAIN,
        BODY,
    )
    _set(
        cls,
        part,
        _rect(a, b, 0.15 * wm, 0.85 * wm, 0.0, 0.12 * hm)
        & (
            _segment(a, b, (0.45 * wm, 0.12 * hm), (0.5 * wm, 0.0), 0.05)
            | _rect(a, b, 0.4 * wm, 0.6 * wm, 0.0, 0.02 * hm)
        ),
        TRAIN,
        DARK,
    )
    band = _rect(a, b, 0.5, wm - 0.5, 0.28 * hm, 0.58 * hm) & (np.mod(a, 1.9) > 0.2)
    _set(cls, part, band, TRAIN, GLASS)
    joint = np.mod(a, car_len) < 0.25
    _set(cls, part, joint & _rect(a, b, 0.5, wm - 0.5, 0.15 * hm, hm - 0.3), TRAIN, DARK)
    _set(cls, part, _rect(a, b, 0.2, wm - 0.2, hm - 0.3, hm) & (np.mod(a + 1.0, car_len) < 2.4), TRAIN, TYRE)
    _set(cls, part, _rect(a, b, 0, wm, 0.66 * hm, 0.72 * hm), TRAIN, FACE2)
    return cls, part


def _shape_train_front(a, b, wm, hm, p):
    cls, part = _new(a, b)
    _set(
        cls,
        part,
        _rect(a, b, 0, wm, 0.1 * hm, hm - 0.15) & _ellipse(a, b, wm / 2, 0.6 * hm, 0.6 * wm, 0.62 * hm),
        TRAIN,
        BODY,
    )
    _set(cls, part, _segment(a, b, (0.35 * wm, 0.1 * hm), (0.5 * wm, 0.0), 0.04), TRAIN, DARK)
    _set(cls, part, _rect(a, b, 0.1 * wm, 0.9 * wm, 0.22 * hm, 0.55 * hm), TRAIN, GLASS)
    _set(cls, part, _rect(a, b, 0.25 * wm, 0.75 * wm, 0.14 * hm, 0.2 * hm), TRAIN, FACE2)
    _set(cls, part, _rect(a, b, 0, wm, 0.66 * hm, 0.72 * hm), TRAIN, FACE2)
    lamp = HEADLIGHT if p["front"] else TAILLIGHT
    _set(cls, part, _rect(a, b, 0.08 * wm, 0.2 * wm, 0.76 * hm, 0.82 * hm), TRAIN, lamp)
    _set(cls, part, _rect(a, b, 0.8 * wm, 0.92 * wm, 0.76 * hm, 0.82 * hm), TRAIN, lamp)
    return cls, part


def _shape_tree(a, b, wm, hm, p):
    cls, part = _new(a, b)
    c = wm / 2
    trunk_w = p["trunk"]
    _set(cls, part, _rect(a, b, c - trunk_w, c + trunk_w, 0.4 * hm, hm), VEGETATION, DARK)
    _set(cls, part, _segment(a, b, (c, 0.55 * hm), (c - 0.25 * wm, 0.35 * hm), trunk_w * 0.6), VEGETATION, DARK)
    _set(cls, part, _segment(a, b, (c, 0.5 * hm), (c + 0.22 * wm, 0.3 * hm), trunk_w * 0.6), VEGETATION, DARK)
    crown = np.zeros(cls.shape, bool)
    for ca, cb, ra, rb in p["blobs"]:
        crown |= _ellipse(a, b, ca * wm, cb * hm, ra * wm, rb * hm)
    _set(cls, part, crown, VEGETATION, BODY)
    return cls, part


def _shape_bush(a, b, wm, hm, p):
    cls, part = _new(a, b)
    m = np.zeros(cls.shape, bool)
    for ca, cb, ra, rb in p["blobs"]:
        m |= _ellipse(a, b, ca * wm, cb * hm, ra * wm, rb * hm)
    _set(cls, part, m & (b <= hm), VEGETATION, BODY)
    return cls, part


def _shape_pole(a, b, wm, hm, p):
    """A pole (at a = p['pole_a']) carrying signs, a traffic light, an arm or a street lamp."""
    cls, part = _new(a, b)
    pa = p["pole_a"]
    pw = p["pole_w"]
    _set(cls, part, _rect(a, b, pa - pw, pa + pw, p["pole_top"], hm), POLE, BODY)
    if p.get("arm"):
        a0, a1 = sorted((pa, p["arm_end"]))
        _set(cls, part, _rect(a, b, a0, a1, p["pole_top"], p["pole_top"] + 0.14), POLE, BODY)
    if p.get("streetlamp"):
        la = p["lamp_a"]
        _set(cls, part, _ellipse(a, b, la, p["pole_top"] + 0.12, 0.35, 0.12), POLE, DARK)
        _set(cls, part, _ellipse(a, b, la, p["pole_top"] + 0.17, 0.25, 0.06), POLE, STREETLAMP)
    for ka, kb, size, shape in p.get("signs", ()):
        if shape == "circle":
            outer = _ellipse(a, b, ka, kb, size / 2, size / 2)
            inner = _ellipse(a, b, ka, kb, size * 0.36, size * 0.36)
        elif shape == "triangle":
            rel = (b - (kb - size / 2)) / size
            outer = (rel >= 0) & (rel <= 1) & (np.abs(a - ka) <= rel * size / 2)
            rel2 = (b - (kb - size * 0.28)) / (size * 0.7)
            inner = (rel2 >= 0) & (rel2 <= 1) & (np.abs(a - ka) <= rel2 * size * 0.35)
        else:
            outer = _rect(a, b, ka - size / 2, ka + size / 2, kb - size * 0.4, kb + size * 0.4)
            inner = _rect(a, b, ka - size * 0.38, ka + size * 0.38, kb - size * 0.28, kb + size * 0.28)
        _set(cls, part, outer, TRAFFIC_SIGN, FACE)
        _set(cls, part, inner, TRAFFIC_SIGN, FACE2)
    for la, lb, state in p.get("lights", ()):
        bw, bh = 0.34, 0.95
        _set(cls, part, _rect(a, b, la - bw / 2, la + bw / 2, lb, lb + bh), TRAFFIC_LIGHT, BODY)
        for k, lamp in enumerate((LAMP_RED, LAMP_AMBER, LAMP_GREEN)):
            on = lamp if state == k else LAMP_OFF
            _set(cls, part, _ellipse(a, b, la, lb + 0.17 + k * 0.3, 0.1, 0.1), TRAFFIC_LIGHT, on)
    return cls, part


_SHAPES = {
    "person": _shape_person,
    "two_wheeler": _shape_two_wheeler,
    "car_rear": _shape_car_rear,
    "car_side": _shape_car_side,
    "box_rear": _shape_box_rear,
    "truck_side": _shape_truck_side,
    "bus_side": _shape_bus_side,
    "train_side": _shape_train_side,
    "train_front": _shape_train_front,
    "tree": _shape_tree,
    "bush": _shape_bush,
    "pole": _shape_pole,
}
_VEHICLES = ("car_rear", "car_side", "box_rear", "truck_side", "bus_side", "train_side", "train_front", "two_wheeler")


@dataclasses.dataclass
class _Sprite:
    kind: str
    x: float  # lateral position (metres) of the sprite's anchor
    z: float  # depth (metres)
    wm: float  # width (metres)
    hm: float  # height (metres)
    params: dict
    anchor: float = 0.5  # which fraction of the width sits at x
    mirror: bool = False


def _draw_sprite(cv, cam, sp, var):
    f, z = cam.f, sp.z
    wpx, hpx = f * sp.wm / z, f * sp.hm / z
    x0 = cam.col(sp.x, z) - sp.anchor * wpx
    y1 = cam.row(0.0, z)
    y0 = y1 - hpx
    c0, c1 = max(0, int(np.floor(x0))), min(cam.w, int(np.ceil(x0 + wpx)))
    r0, r1 = max(0, int(np.floor(y0))), min(cam.h, int(np.ceil(y1)))
    if c1 <= c0 or r1 <= r0 or hpx < 2.0:
        return
    a = ((cam.xc[c0:c1] - x0) * (z / f)).astype(np.float32)[None, :]
    if sp.mirror:
        a = sp.wm - a
    b = ((cam.yc[r0:r1] - y0) * (z / f)).astype(np.float32)[:, None]
    cls, part = _SHAPES[sp.kind](a, b, sp.wm, sp.hm, sp.params)
    cv.paint(r0, c0, cls, part, np.float32(z), a, b, np.float32(var), FACES_CAMERA)
    if sp.kind in _VEHICLES:  # contact shadow just below the vehicle, on the ground
        rr1 = min(cam.h, int(np.ceil(y1 + max(1.5, 0.06 * hpx))))
        rr0 = max(0, int(np.floor(y1 - 0.04 * hpx)))
        cc0 = max(0, int(np.floor(x0 + 0.03 * wpx)))
        cc1 = min(cam.w, int(np.ceil(x0 + 0.97 * wpx)))
        if rr1 > rr0 and cc1 > cc0:
            sl = (slice(rr0, rr1), slice(cc0, cc1))
            lab = cv.label[sl]
            m = (lab == ROAD) | (lab == SIDEWALK) | (lab == TERRAIN)
            cv.shadow[sl][m] |= SHADOW_CONTACT


# ----------------------------------------------------------------------------------------------------
# Planes parallel to the road
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Plane:
    side: int  # -1 left of the road, +1 right
    x: float  # |lateral position| (metres)
    bounds: np.ndarray  # [n+1] segment depth boundaries
    cls: np.ndarray  # [n] class per segment (NONE = gap)
    top: np.ndarray  # [n] top height (metres)
    bottom: np.ndarray  # [n] bottom height
    var: np.ndarray  # [n]
    kind: str  # "facade", "wall", "fence", "hedge", "mixed"
    win: np.ndarray = None  # [n, 4] window params: period_u, period_v, width frac, height frac


def _draw_plane(cv, cam, pl):
    dx = (cam.xc - cam.x_v) * pl.side
    cols = np.nonzero(dx > 0.5)[0]
    if cols.size == 0:
        return
    z = cam.f * pl.x / dx[cols]
    idx = np.searchsorted(pl.bounds, z, side="right") - 1
    ok = (idx >= 0) & (idx < len(pl.cls))
    cols, z, idx = cols[ok], z[ok], idx[ok]
    ok = pl.cls[idx] != NONE
    cols, z, idx = cols[ok], z[ok], idx[ok]
    if cols.size == 0:
        return
    c0, c1 = cols.min(), cols.max() + 1
    # dense per-column arrays over c0..c1 (columns not in `cols` get an empty span)
    zz = np.full(c1 - c0, 1e6, np.float32)
    ii = np.zeros(c1 - c0, np.int64)
    valid = np.zeros(c1 - c0, bool)
    zz[cols - c0], ii[cols - c0], valid[cols - c0] = z, idx, True
    top_h, bot_h = pl.top[ii], pl.bottom[ii]
    u = zz  # along-road coordinate
    if pl.kind in ("hedge", "mixed"):
        wob = (0.6 * np.sin(u * 1.3 + pl.var[ii] * 20) + 0.4 * np.sin(u * 3.1 + 1.0)) * 0.6
        veg = pl.cls[ii] == VEGETATION
        top_h = np.where(veg, top_h + wob, top_h)
    y_top = cam.row(top_h, zz)
    y_bot = cam.row(bot_h, zz)
    r0 = max(0, int(np.floor(y_top[valid].min())))
    r1 = min(cam.h, int(np.ceil(y_bot[valid].max())))
    if r1 <= r0:
        return
    yc = cam.yc[r0:r1, None]
    inside = (yc >= y_top[None, :]) & (yc < y_bot[None, :])
    v = (cam.h_c - (yc - cam.y_h) * zz[None, :] / cam.f).astype(np.float32)
    seg_cls = np.where(valid, pl.cls[ii], NONE).astype(np.uint8)
    inside &= valid[None, :]
    cls = np.where(inside, seg_cls[None, :], NONE).astype(np.uint8)
    part = np.zeros(cls.shape, np.uint8)
    var = np.broadcast_to(pl.var[ii][None, :], cls.shape)
    if pl.win is not None:
        w = pl.win[ii]  # [cols, 4]
        pu, pv, fw, fh = w[:, 0], w[:, 1], w[:, 2], w[:, 3]
        gu = u / pu
        fu = gu - np.floor(gu)
        colb = seg_cls == BUILDING
        g = (v - 0.2) * (1.0 / pv)[None, :]
        fl = np.floor(g)
        fv = g - fl
        wincol = colb & (np.abs(fu - 0.5) < fw / 2)
        win = (
            (np.abs(fv - 0.55) < (fh / 2)[None, :])
            & wincol[None, :]
            & (v > 1.0)
            & (v < (top_h - 0.8)[None, :])
            & inside
        )
        shopcol = colb & (np.abs(fu - 0.5) < 0.42) & (pl.var[ii] > 0.5)
        win |= shopcol[None, :] & (v > 0.3) & (v < 2.6) & inside
        wi = np.nonzero(win)
        part[wi] = WINDOW
        var = np.array(var)
        var[wi] = _hash01(np.floor(gu)[wi[1]] + 100 * pl.var[ii][wi[1]], fl[wi])
    if pl.kind in ("fence", "mixed"):
        fence = seg_cls == FENCE
        if fence.any():
            bars = (np.mod(u, 0.22) < 0.08)[None, :]
            posts = (np.mod(u, 2.5) < 0.12)[None, :]
            rails = (np.abs(v - top_h[None, :] + 0.08) < 0.07) | (np.abs(v - bot_h[None, :] - 0.2) < 0.06)
            keep = bars | posts | rails
            cls = np.where(fence[None, :] & ~keep, NONE, cls).astype(np.uint8)
            part = np.where(fence[None, :] & (posts | rails), DARK, part).astype(np.uint8)
    if pl.kind in ("wall", "mixed") and (seg_cls == WALL).any():
        wall = (seg_cls == WALL)[None, :]
        cap = np.abs(v - top_h[None, :] + 0.06) < 0.06
        part = np.where(wall & cap, DARK, part).astype(np.uint8)
    face = FACES_RIGHT if pl.side < 0 else FACES_LEFT
    cv.paint(r0, c0, cls, part, zz[None, :], u[None, :], v, var, face)


def _segments(rng, z0, z1, len_lo, len_hi, choose, gaps=()):
    """Split [z0, z1) into random-length segments; `choose(rng)` gives the class; gaps force NONE."""
    bounds, classes = [z0], []
    z = z0
    while z < z1:
        zn = min(z1, z + rng.uniform(len_lo, len_hi))
        for g0, g1 in gaps:
            if z < g0 < zn:
                zn = g0
            if g0 <= z < g1:
                zn = min(g1, z1)
                bounds.append(zn)
                classes.append(NONE)
                break
        else:
            bounds.append(zn)
            classes.append(choose(rng))
        z = zn
    return np.asarray(bounds, np.float32), np.asarray(classes, np.uint8)


# ----------------------------------------------------------------------------------------------------
# The layout
# ----------------------------------------------------------------------------------------------------


def render_scene(rng, height, width):
    """Sample a random street layout and rasterise it.  Returns a `Scene`."""
    cam = _Camera(rng, height, width)
    cv = _Canvas(height, width)
    f, y_h, x_v, h_c = cam.f, cam.y_h, cam.x_v, cam.h_c

    # Rare classes get an explicit per-image presence draw so that each occurs in many images.
    want = {
        k: rng.random() < p
        for k, p in (
            ("train", 0.45),
            ("truck", 0.6),
            ("bus", 0.55),
            ("motorcycle", 0.6),
            ("bicycle", 0.6),
            ("wall", 0.7),
            ("fence", 0.7),
            ("terrain", 0.8),
            ("cross", 0.55),
            ("light", 0.85),
        )
    }

    # --- road geometry -------------------------------------------------------------------------------
    n_lanes = int(rng.integers(2, 5))
    lane_w = rng.uniform(3.0, 3.6)
    ego = int(rng.integers(0, n_lanes))
    x_l = -(ego + 0.5) * lane_w + rng.uniform(-0.4, 0.4)
    x_r = x_l + n_lanes * lane_w
    two_way = n_lanes >= 2 and rng.random() < 0.6
    n_oncoming = (n_lanes // 2) if two_way else 0
    sw = (rng.uniform(2.0, 5.0), rng.uniform(2.0, 5.0))  # sidewalk widths left, right
    terr = tuple(rng.uniform(1.5, 6.0) if (want["terrain"] and rng.random() < 0.75) else 0.0 for _ in range(2))
    if want["terrain"] and terr == (0.0, 0.0):
        terr = (rng.uniform(1.5, 6.0), 0.0)
    side_x = (x_l - sw[0], x_r + sw[1])  # outer sidewalk edges
    fac_x = (-(-side_x[0] + terr[0] + rng.uniform(0.0, 1.5)), side_x[1] + terr[1] + rng.uniform(0.0, 1.5))
    z_back = rng.uniform(110.0, 220.0)
    cross = None
    if want["cross"]:
        zc0 = rng.uniform(18.0, 55.0)
        cross = (zc0, zc0 + rng.uniform(9.0, 15.0))

    # --- ground ----------------------------------------------------------------------------------------
    g0 = int(np.floor(y_h)) + 1
    if g0 < height:
        dy = cam.yc[g0:, None] - y_h
        zg = (f * h_c / dy).astype(np.float32)  # [rows, 1]
        xg = ((cam.xc[None, :] - x_v) * (h_c / dy)).astype(np.float32)  # [rows, W]
        lab = np.full(xg.shape, SIDEWALK, np.uint8)
        beyond_l = xg < side_x[0]
        beyond_r = xg > side_x[1]
        lab[beyond_l] = TERRAIN if terr[0] > 0 else SIDEWALK
        lab[beyond_r] = TERRAIN if terr[1] > 0 else SIDEWALK
        on_road = (xg >= x_l) & (xg <= x_r)
        if cross is not None:
            in_cross = (zg >= cross[0]) & (zg < cross[1])
            on_road |= in_cross
        lab[on_road] = ROAD
        part = np.zeros(xg.shape, np.uint8)
        # lane marks: dashed lane separators, solid edge lines, a crosswalk before the crossing
        marks = np.zeros(xg.shape, bool)
        dash = np.mod(zg + rng.uniform(0, 9), 9.0) < 4.0
        for k in range(1, n_lanes):
            xb = x_l + k * lane_w
            solid = two_way and k == n_oncoming
            marks |= (np.abs(xg - xb) < (0.12 if solid else 0.08)) & (True if solid else dash)
        marks |= (np.abs(xg - (x_l + 0.3)) < 0.08) | (np.abs(xg - (x_r - 0.3)) < 0.08)
        if cross is not None:
            marks &= ~in_cross
            zebra = (zg >= cross[0] - 4.0) & (zg < cross[0] - 1.0) & (np.mod(xg, 1.2) < 0.6)
            marks |= zebra
        marks &= lab == ROAD
        part[marks] = MARK
        shadow = np.zeros(xg.shape, np.uint8)
        shadow[xg < fac_x[0] + rng.uniform(3.0, 9.0)] |= SHADOW_LEFT
        shadow[xg > fac_x[1] - rng.uniform(3.0, 9.0)] |= SHADOW_RIGHT
        sl = (slice(g0, height), slice(0, width))
        cv.label[sl] = lab
        cv.depth[sl] = np.broadcast_to(zg, xg.shape)
        cv.u[sl] = xg
        cv.v[sl] = np.broadcast_to(zg, xg.shape)
        cv.part[sl] = part
        cv.var[sl] = 0.5
        cv.facing[sl] = FLAT
        cv.shadow[sl] = shadow

    # --- distant skyline ---------------------------------------------------------------------------------
    if rng.random() < 0.85:
        xs = [0]
        while xs[-1] < width:
            xs.append(xs[-1] + int(rng.integers(max(2, width // 60), max(3, width // 10))))
        n = len(xs) - 1
        seg_cls = np.where(rng.random(n) < 0.65, BUILDING, VEGETATION).astype(np.uint8)
        seg_h = np.where(seg_cls == BUILDING, rng.uniform(8, 45, n), rng.uniform(6, 14, n))
        seg_id = np.repeat(np.arange(n), np.diff(xs))[:width]
        hcol = seg_h[seg_id]
        wob = np.where(seg_cls[seg_id] == VEGETATION, 1.5 * np.sin(cam.xc * 0.7) + np.sin(cam.xc * 1.9), 0.0)
        y_top = cam.row(hcol + wob, z_back)
        y_bot = cam.row(0.0, z_back) + 1.0
        r0 = max(0, int(np.floor(y_top.min())))
        r1 = min(height, int(np.ceil(y_bot)))
        if r1 > r0:
            yc = cam.yc[r0:r1, None]
            cls = np.where(yc >= y_top[None, :], seg_cls[seg_id][None, :], NONE).astype(np.uint8)
            u = cam.xc[None, :] * z_back / f
            v = (h_c - (yc - y_h) * z_back / f).astype(np.float32)
            cv.paint(
                r0,
                0,
                cls,
                np.zeros_like(cls),
                np.float32(z_back),
                u,
                v,
                rng.random(n).astype(np.float32)[seg_id][None, :],
                FACES_CAMERA,
            )

    # --- planes: back layer, facades, walls/fences -------------------------------------------------------
    gaps = [cross] if cross is not None else []
    for si, side in enumerate((-1, 1)):
        fx = abs(fac_x[si])
        # back layer: buildings or tree lines far behind the facades
        bounds, cls = _segments(rng, 1.0, z_back, 15.0, 45.0, lambda r: BUILDING if r.random() < 0.6 else VEGETATION)
        n = len(cls)
        top = np.where(cls == BUILDING, rng.uniform(10, 35, n), rng.uniform(7, 14, n))
        _draw_plane(
            cv,
            cam,
            _Plane(
                side,
                fx + rng.uniform(8, 18),
                bounds,
                cls,
                top,
                np.zeros(n),
                rng.random(n).astype(np.float32),
                "mixed",
                _window_params(rng, n),
            ),
        )
        # front facades with occasional gaps and the cross street
        bounds, cls = _segments(
            rng, rng.uniform(-5.0, 5.0), z_back, 8.0, 30.0, lambda r: BUILDING if r.random() < 0.8 else NONE, gaps
        )
        n = len(cls)
        _draw_plane(
            cv,
            cam,
            _Plane(
                side,
                fx,
                bounds,
                cls,
                rng.uniform(7, 28, n),
                np.zeros(n),
                rng.random(n).astype(np.float32),
                "facade",
                _window_params(rng, n),
            ),
        )
        # walls and fences at the outer sidewalk edge (or in front of the facades)
        p_wall = 0.35 if want["wall"] else 0.0
        p_fence = 0.35 if want["fence"] else 0.0

        def choose(r, pw=p_wall, pf=p_fence):
            x = r.random()
            return WALL if x < pw else FENCE if x < pw + pf else NONE

        bounds, cls = _segments(rng, rng.uniform(0.0, 10.0), min(z_back, 90.0), 5.0, 25.0, choose, gaps)
        n = len(cls)
        if n and (cls != NONE).any():
            wx = abs(side_x[si]) + (0.1 if terr[si] > 0 else min(0.5, fx - abs(side_x[si]) - 0.2))
            top = np.where(cls == WALL, rng.uniform(0.8, 2.6, n), rng.uniform(1.0, 2.2, n))
            _draw_plane(
                cv,
                cam,
                _Plane(
                    side,
                    max(wx, abs(side_x[si])),
                    bounds,
                    cls,
                    top,
                    np.zeros(n),
                    rng.random(n).astype(np.float32),
                    "mixed",
                ),
            )

    # --- sprites ------------------------------------------------------------------------------------------
    sprites = []
    lane_x = [x_l + (k + 0.5) * lane_w for k in range(n_lanes)]
    oncoming = [k < n_oncoming for k in range(n_lanes)]

    def vehicle_rear(kind_cls, x, z, front):
        if kind_cls == CAR:
            return _Sprite("car_rear", x, z, rng.uniform(1.7, 1.95), rng.uniform(1.4, 1.65), {"front": front})
        if kind_cls == TRUCK:
            return _Sprite(
                "box_rear", x, z, rng.uniform(2.3, 2.55), rng.uniform(3.0, 3.9), {"cls": TRUCK, "front": front}
            )
        if kind_cls == BUS:
            return _Sprite("box_rear", x, z, 2.55, rng.uniform(3.0, 3.4), {"cls": BUS, "front": front})
        return _Sprite("train_front", x, z, 2.65, rng.uniform(3.4, 3.8), {"front": front})

    def two_wheeler(x, z, motor, rider):
        wm = 2.1 if motor else 1.75
        hm = (1.75 if rider else 1.15) if motor else (1.8 if rider else 1.05)
        return _Sprite("two_wheeler", x, z, wm, hm, {"motor": motor, "rider": rider}, mirror=rng.random() < 0.5)

    # moving traffic in the lanes
    rare_lane = []
    if want["truck"] and rng.random() < 0.6:
        rare_lane.append(TRUCK)
    if want["bus"] and rng.random() < 0.6:
        rare_lane.append(BUS)
    if want["train"] and (cross is None or rng.random() < 0.3):
        rare_lane.append(TRAIN)
    slots = []
    for k in range(n_lanes):
        z = rng.uniform(6.0, 14.0) if k != ego else rng.uniform(9.0, 20.0)
        while z < 90.0:
            if rng.random() < 0.55:
                slots.append((k, z))
            z += rng.uniform(7.0, 22.0) * (1 + z / 40.0)
    rng.shuffle(slots)
    for i, (k, z) in enumerate(slots):
        x = lane_x[k] + rng.uniform(-0.35, 0.35)
        kind = (
            rare_lane[i]
            if i < len(rare_lane)
            else (CAR if rng.random() < 0.85 else (TRUCK if rng.random() < 0.5 else BUS))
        )
        if kind == TRAIN:
            x = lane_x[k]
        sprites.append(vehicle_rear(kind, x, z, oncoming[k]))
    if want["motorcycle"] and rng.random() < 0.5:
        k = int(rng.integers(0, n_lanes))
        sprites.append(two_wheeler(lane_x[k] + rng.uniform(-1, 1), rng.uniform(6, 40), True, True))

    # parked cars along the kerbs
    for side in (-1, 1):
        if rng.random() < 0.55:
            z = rng.uniform(4.0, 12.0)
            x = (x_l + 1.1) if side < 0 else (x_r - 1.1)
            while z < 70.0:
                if cross is None or not (cross[0] - 6 < z < cross[1] + 1):
                    sprites.append(vehicle_rear(CAR, x, z, False))
                z += rng.uniform(5.5, 12.0)

    # cross traffic (side views) on the crossing street
    if cross is not None:
        zc0, zc1 = cross
        lanes = (zc0 + 0.3 * (zc1 - zc0), zc0 + 0.7 * (zc1 - zc0))
        rare = [c for c, k in ((TRAIN, "train"), (BUS, "bus"), (TRUCK, "truck")) if want[k]]
        rng.shuffle(rare)
        choices = rare[:2] + [CAR, CAR, CAR]
        if want["train"] and TRAIN not in choices:
            choices[0] = TRAIN
        n_cross = int(rng.integers(1, 4))
        for j in range(n_cross):
            kind = choices[j] if j < len(choices) else CAR
            zl = lanes[j % 2]
            right = j % 2 == 0
            x = rng.uniform(-18.0, 18.0)
            if kind == CAR:
                sprites.append(
                    _Sprite("car_side", x, zl, rng.uniform(3.9, 4.7), rng.uniform(1.4, 1.55), {"right": right})
                )
            elif kind == TRUCK:
                sprites.append(
                    _Sprite("truck_side", x, zl, rng.uniform(7.0, 10.0), rng.uniform(3.2, 3.9), {"right": right})
                )
            elif kind == BUS:
                sprites.append(
                    _Sprite("bus_side", x, zl, rng.uniform(10.0, 13.0), rng.uniform(3.0, 3.4), {"right": right})
                )
            else:
                car_len = rng.uniform(8.0, 12.0)
                sprites.append(
                    _Sprite(
                        "train_side",
                        x,
                        zl,
                        car_len * int(rng.integers(2, 4)),
                        rng.uniform(3.4, 3.8),
                        {"car_len": car_len},
                    )
                )
        # riders and pedestrians crossing
        for _ in range(int(rng.integers(0, 3))):
            motor = rng.random() < 0.4
            sprites.append(two_wheeler(rng.uniform(x_l - 2, x_r + 2), rng.uniform(zc0 + 1, zc1 - 1), motor, True))
        for _ in range(int(rng.integers(0, 4))):
            sprites.append(_person(rng, rng.uniform(x_l, x_r), rng.uniform(zc0 - 4.0, zc0 - 1.0)))

    # bicycles (mostly ridden) near the kerb / on the sidewalk
    if want["bicycle"]:
        for _ in range(int(rng.integers(1, 4))):
            si = int(rng.integers(0, 2))
            ridden = rng.random() < 0.65
            if ridden:
                x = (x_l + 0.7) if si == 0 else (x_r - 0.7)
            else:
                x = side_x[si] + (0.8 if si == 0 else -0.8)
            sprites.append(two_wheeler(x, rng.uniform(5, 45), False, ridden))
    if want["motorcycle"]:
        for _ in range(int(rng.integers(1, 3))):
            si = int(rng.integers(0, 2))
            ridden = rng.random() < 0.5
            x = ((x_l + 1.0) if si == 0 else (x_r - 1.0)) if ridden else side_x[si] + (1.0 if si == 0 else -1.0)
            sprites.append(two_wheeler(x, rng.uniform(5, 45), True, ridden))

    # pedestrians on the sidewalks
    for _ in range(int(rng.integers(1, 9))):
        si = int(rng.integers(0, 2))
        lo, hi = sorted((x_l if si == 0 else x_r, side_x[si]))
        sprites.append(_person(rng, rng.uniform(lo + 0.3, hi - 0.3), rng.uniform(4.0, 60.0)))

    # vegetation: trees along the outer sidewalk edge or on the terrain strip, bushes
    for si, side in enumerate((-1, 1)):
        z = rng.uniform(3.0, 15.0)
        spacing = rng.uniform(7.0, 16.0)
        has_trees = rng.random() < 0.7
        while has_trees and z < 110.0:
            if rng.random() < 0.8 and (cross is None or not (cross[0] - 2 < z < cross[1] + 2)):
                x = side_x[si] + side * (terr[si] / 2 if terr[si] > 0 else -0.6)
                sprites.append(_tree(rng, x, z))
            z += spacing * rng.uniform(0.8, 1.2)
        if terr[si] > 0 or rng.random() < 0.4:
            for _ in range(int(rng.integers(1, 6))):
                x = side_x[si] + side * rng.uniform(0.3, max(0.4, terr[si]))
                sprites.append(_bush(rng, x, rng.uniform(4.0, 60.0)))

    # poles: street lamps, sign poles, traffic lights (at the crossing, or free-standing)
    for si, side in enumerate((-1, 1)):
        kerb = (x_l - 0.5) if si == 0 else (x_r + 0.5)
        if rng.random() < 0.7:
            z = rng.uniform(5.0, 20.0)
            gap = rng.uniform(18.0, 32.0)
            while z < 120.0:
                sprites.append(_streetlamp(rng, kerb, z, side))
                z += gap
        for _ in range(int(rng.integers(0, 3)) + (1 if si == 0 else 0)):
            sprites.append(_sign_pole(rng, kerb - side * rng.uniform(0.0, 0.4), rng.uniform(4.0, 50.0)))
    if want["light"]:
        zl = (cross[0] - rng.uniform(0.5, 2.0)) if cross is not None else rng.uniform(10.0, 45.0)
        for si, side in enumerate((-1, 1)):
            kerb = (x_l - 0.4) if si == 0 else (x_r + 0.4)
            if rng.random() < 0.75:
                sprites.append(
                    _light_pole(rng, kerb, zl + rng.uniform(-0.5, 0.5), side, arm=rng.random() < 0.5, lanes=(x_l, x_r))
                )

    # far to near (the z-buffer makes the order irrelevant for labels; this is just tidy)
    sprites.sort(key=lambda s: -s.z)
    for sp in sprites:
        if sp.z > 2.5:
            _draw_sprite(cv, cam, sp, rng.random())

    return Scene(cv.label, cv.depth, cv.u, cv.v, cv.part, cv.var, cv.facing, cv.shadow, float(y_h))


def _window_params(rng, n):
    return np.stack(
        [rng.uniform(2.2, 4.0, n), rng.uniform(2.8, 3.6, n), rng.uniform(0.35, 0.65, n), rng.uniform(0.35, 0.6, n)],
        axis=1,
    ).astype(np.float32)


def _person(rng, x, z):
    return _Sprite(
        "person", x, z, 0.7, rng.uniform(1.55, 1.95), {"stride": rng.uniform(0.0, 0.18), "bag": rng.random() < 0.3}
    )


def _tree(rng, x, z):
    wm, hm = rng.uniform(2.8, 6.0), rng.uniform(5.0, 10.0)
    blobs = [(0.5, 0.3, 0.45, 0.28)] + [
        (rng.uniform(0.25, 0.75), rng.uniform(0.15, 0.45), rng.uniform(0.2, 0.3), rng.uniform(0.12, 0.22))
        for _ in range(int(rng.integers(2, 5)))
    ]
    return _Sprite("tree", x, z, wm, hm, {"trunk": rng.uniform(0.1, 0.2), "blobs": blobs})


def _bush(rng, x, z):
    wm, hm = rng.uniform(1.0, 3.0), rng.uniform(0.6, 1.4)
    blobs = [
        (rng.uniform(0.3, 0.7), rng.uniform(0.55, 0.75), rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.5))
        for _ in range(3)
    ]
    return _Sprite("bush", x, z, wm, hm, {"blobs": blobs})


def _streetlamp(rng, x, z, side):
    hm = rng.uniform(6.0, 8.0)
    arm = rng.uniform(1.0, 2.0)
    wm = arm + 0.8
    # the arm reaches over the road: towards +x on the left side
    pole_a = 0.4 if side < 0 else wm - 0.4
    end = pole_a - side * arm
    return _Sprite(
        "pole",
        x,
        z,
        wm,
        hm,
        {
            "pole_a": pole_a,
            "pole_w": 0.09,
            "pole_top": 0.0,
            "arm": True,
            "arm_end": end,
            "streetlamp": True,
            "lamp_a": end + side * 0.1,
        },
        anchor=pole_a / wm,
    )


def _sign_pole(rng, x, z):
    hm = rng.uniform(2.8, 3.6)
    size = rng.uniform(0.55, 0.8)
    wm = size + 0.4
    pa = wm / 2
    shapes = ("circle", "triangle", "rect")
    signs = [(pa, size / 2 + 0.05, size, shapes[int(rng.integers(0, 3))])]
    if rng.random() < 0.35:
        signs.append((pa, size * 1.5 + 0.15, size * 0.8, "rect"))
    return _Sprite("pole", x, z, wm, hm, {"pole_a": pa, "pole_w": 0.05, "pole_top": 0.2, "signs": signs})


def _light_pole(rng, x, z, side, arm, lanes):
    state = int(rng.integers(0, 3))
    if arm:
        reach = rng.uniform(3.0, 6.0)
        hm = rng.uniform(5.5, 6.5)
        wm = reach + 0.8
        pa = 0.4 if side < 0 else wm - 0.4
        end = pa - side * reach
        lights = [(end + side * 0.25, 0.2, state), (pa - side * 0.0, 2.0, state)]
        return _Sprite(
            "pole",
            x,
            z,
            wm,
            hm,
            {"pole_a": pa, "pole_w": 0.1, "pole_top": 0.0, "arm": True, "arm_end": end, "lights": lights},
            anchor=pa / wm,
        )
    hm = rng.uniform(3.2, 4.2)
    wm = 0.8
    lights = [(0.4, 0.05, state)]
    signs = [(0.4, 1.5, 0.5, "rect")] if rng.random() < 0.3 else []
    return _Sprite(
        "pole", x, z, wm, hm, {"pole_a": 0.4, "pole_w": 0.07, "pole_top": 0.5, "lights": lights, "signs": signs}
    )
