"""Scene layout of the "towns" family (private): a ray-cast 3-D town seen through a distorted camera.

Every pixel gets a ray from the camera model (rectilinear, stereographic-like or equidistant fisheye, with
pitch, roll and a rolling-shutter yaw sweep over the rows).  The ray is intersected with a piecewise-planar
hilly ground and with analytic primitives (boxes, ellipsoids, vertical cylinders, shaped panels); the nearest
hit wins, so the label is exactly the class of the nearest surface.  All primitives of a kind are intersected
in one batch: a primitive is only tested against the 8x8 pixel tiles whose ray cone meets its bounding sphere.
"""

import collections

import numpy as np

(
    ROAD,
    SIDEWALK,
    BUILDING,
    WALL,
    FENCE,
    POLE,
    LIGHT,
    SIGN,
    VEGETATION,
    TERRAIN,
    SKY,
    PERSON,
    RIDER,
    CAR,
    TRUCK,
    BUS,
    TRAIN,
    MOTORCYCLE,
    BICYCLE,
) = range(19)

# Surface parts: the label is the primitive's class; the part only changes the colour.
(BODY, GLASS, TYRE, MARK, RAIL, KERB, LAMP_RED, LAMP_WARM, LAMP_GREEN, SKIN, CLOTH, ROOF, PLATE) = range(13)
EMISSIVE_PARTS = (LAMP_RED, LAMP_WARM, LAMP_GREEN)

_TILE = 8
_FAR = 420.0  # the ground ends here; beyond it only the background primitives and the sky

Town = collections.namedtuple(
    "Town", ["label", "depth", "normal", "uv", "part", "inst", "dirs", "sun", "height", "width"]
)


# ----------------------------------------------------------------------------------------------- camera
def _camera(rng, height, width):
    """Per-pixel unit ray directions [Hp, Wp, 3] (world: x right, y up, z forward) of a random camera."""
    hp, wp = -(-height // _TILE) * _TILE, -(-width // _TILE) * _TILE
    kind = rng.choice(3, p=[0.45, 0.3, 0.25])  # rectilinear, stereographic-like, equidistant fisheye
    k = (1.0, 0.55, 0.0)[kind]
    half = np.radians((rng.uniform(32, 42), rng.uniform(42, 55), rng.uniform(50, 66))[kind])
    f = (width / 2) * (k / np.tan(k * half) if k > 0 else 1.0 / half)
    v, u = np.mgrid[0:hp, 0:wp].astype(np.float64) + 0.5
    x = u - width / 2 + rng.uniform(-0.03, 0.03) * width
    y = v - height / 2 + rng.uniform(-0.06, 0.06) * height
    r = np.hypot(x, y) / f
    theta = np.arctan(k * r) / k if k > 0 else r
    phi = np.arctan2(y, x)
    s = np.sin(theta)
    d = np.stack([s * np.cos(phi), -s * np.sin(phi), np.cos(theta)], -1)
    roll, pitch = np.radians(rng.uniform(-6, 6)), np.radians(rng.uniform(-3, 9))
    # Rolling shutter: the rows are exposed one after another while the camera turns.
    sweep = np.radians(rng.uniform(-4, 4)) if rng.random() < 0.4 else 0.0
    yaw = np.radians(rng.uniform(-4, 4)) + sweep * (v / height - 0.5)
    cr, sr = np.cos(roll), np.sin(roll)
    d = np.stack([cr * d[..., 0] - sr * d[..., 1], sr * d[..., 0] + cr * d[..., 1], d[..., 2]], -1)
    cp, sp = np.cos(pitch), np.sin(pitch)
    d = np.stack([d[..., 0], cp * d[..., 1] - sp * d[..., 2], sp * d[..., 1] + cp * d[..., 2]], -1)
    cy, sy = np.cos(yaw), np.sin(yaw)
    d = np.stack([cy * d[..., 0] + sy * d[..., 2], d[..., 1], -sy * d[..., 0] + cy * d[..., 2]], -1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _tiles(dirs):
    """(pixel ids [n, T*T], cone axis [n, 3], cone half-angle [n]) of the T x T tiles of a ray grid."""
    hp, wp, _ = dirs.shape
    ids = np.arange(hp * wp).reshape(hp // _TILE, _TILE, wp // _TILE, _TILE).transpose(0, 2, 1, 3)
    ids = ids.reshape(-1, _TILE * _TILE)
    td = dirs.reshape(-1, 3)[ids]
    axis = td.mean(1)
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    half = np.arccos(np.clip(np.einsum("npc,nc->np", td, axis).min(1), -1, 1)) + 1e-3
    return ids, axis, half


# ------------------------------------------------------------------------------------------- primitives
class _Prims:
    """Primitive lists of one scene; `add_*` take world positions in metres and a yaw about the vertical."""

    def __init__(self):
        self.rows = {"box": [], "ell": [], "cyl": [], "pan": []}
        self.next_inst = 1

    def inst(self):
        self.next_inst += 1
        return self.next_inst - 1

    def box(self, pos, size, yaw, cls, inst, part=BODY):
        """Box of size (w, h, l) standing on `pos`, local z (length) along heading `yaw`."""
        x, y, z = pos
        w, h, ln = size
        self.rows["box"].append((x, y + h / 2, z, w / 2, h / 2, ln / 2, yaw, 0, 0, cls, part, inst))

    def ell(self, centre, radii, yaw, cls, inst, part=BODY):
        self.rows["ell"].append((*centre, *radii, yaw, 0, 0, cls, part, inst))

    def cyl(self, pos, radius, height, cls, inst, part=BODY):
        x, y, z = pos
        self.rows["cyl"].append((x, y + height / 2, z, radius, height / 2, radius, 0, 0, 0, cls, part, inst))

    def panel(self, pos, width, height, yaw, shape, cls, inst, part=BODY, pitch=0.0):
        """Vertical panel (local x across, y up) standing on `pos`; shape 0 rect, 1 disc, 2 triangle,
        3 diamond, 4 diamond mesh, 5 bars (mesh and bars see-through, `pitch` their spacing)."""
        x, y, z = pos
        self.rows["pan"].append((x, y + height / 2, z, width / 2, height / 2, 0.0, yaw, shape, pitch, cls, part, inst))

    def arrays(self, kind):
        rows = self.rows[kind]
        return np.array(rows, np.float64).reshape(-1, 12)


def _to_local(vec, yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * vec[:, 0] - s * vec[:, 2], vec[:, 1], s * vec[:, 0] + c * vec[:, 2]], -1)


def _to_world(vec, yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * vec[:, 0] + s * vec[:, 2], vec[:, 1], -s * vec[:, 0] + c * vec[:, 2]], -1)


def _hit_box(o, d, p):
    half = p[:, 3:6]
    d = np.where(np.abs(d) < 1e-9, 1e-9, d)
    t1, t2 = (-half - o) / d, (half - o) / d
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    tn, tf = tmin.max(1), tmax.min(1)
    ok = (tn <= tf) & (tn > 0)
    axis = tmin.argmax(1)
    n = np.zeros_like(o)
    rows = np.arange(len(o))
    n[rows, axis] = -np.sign(d[rows, axis])
    q = o + tn[:, None] * d
    # Face coordinates in metres: along the face, and height above the box bottom (top: x, z).
    u = np.where(axis == 0, q[:, 2] + half[:, 2], np.where(axis == 2, q[:, 0] + half[:, 0], q[:, 0]))
    v = np.where(axis == 1, q[:, 2], q[:, 1] + half[:, 1])
    return np.where(ok, tn, np.inf), n, np.stack([u, v], -1)


def _hit_ell(o, d, p):
    r = p[:, 3:6]
    o, d = o / r, d / r
    a, b, c = (d * d).sum(1), 2 * (o * d).sum(1), (o * o).sum(1) - 1
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    q = o + t[:, None] * d
    n = q / r
    uv = np.stack([np.arctan2(q[:, 0], q[:, 2]) * r[:, 0], q[:, 1] * r[:, 1]], -1)
    return np.where((disc >= 0) & (t > 0), t, np.inf), n, uv


def _hit_cyl(o, d, p):
    r, hh = p[:, 3], p[:, 4]
    a = d[:, 0] ** 2 + d[:, 2] ** 2 + 1e-12
    b = 2 * (o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2])
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - r * r
    disc = b * b - 4 * a * c
    sq = np.sqrt(np.maximum(disc, 0))
    t = np.full(len(o), np.inf)
    for root in ((-b + sq) / (2 * a), (-b - sq) / (2 * a)):  # far first, so the near root overwrites it
        y = o[:, 1] + root * d[:, 1]
        t = np.where((disc >= 0) & (root > 0) & (np.abs(y) <= hh), root, t)
    q = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    n = np.stack([q[:, 0], np.zeros(len(q)), q[:, 2]], -1) / r[:, None]
    uv = np.stack([np.arctan2(q[:, 0], q[:, 2]) * r, q[:, 1] + hh], -1)
    return t, n, uv


def _hit_pan(o, d, p):
    hw, hh, shape, pitch = p[:, 3], p[:, 4], p[:, 7], np.maximum(p[:, 8], 1e-3)
    dz = np.where(np.abs(d[:, 2]) < 1e-9, 1e-9, d[:, 2])
    t = -o[:, 2] / dz
    x, y = o[:, 0] + t * d[:, 0], o[:, 1] + t * d[:, 1]
    ax, ay = np.abs(x) / hw, np.abs(y) / hh
    inside = (ax <= 1) & (ay <= 1)
    yb = (y + hh) / (2 * hh)  # 0 at the bottom, 1 at the top
    mesh = (((x + y) / pitch) % 1 < 0.22) | (((x - y) / pitch) % 1 < 0.22)
    frame = (ax > 0.97) | (ay > 0.92)
    bars = ((x / pitch) % 1 < 0.3) | (yb > 0.9) | (yb < 0.08)
    ok = inside & np.select(
        [shape == 1, shape == 2, shape == 3, shape == 4, shape == 5],
        [ax**2 + ay**2 <= 1, ax <= 1 - yb, ax + ay <= 1, mesh | frame, bars],
        True,
    )
    n = np.zeros_like(o)
    n[:, 2] = -np.sign(dz)
    return np.where(ok & (t > 0), t, np.inf), n, np.stack([x + hw, y + hh], -1)


_HIT = {"box": _hit_box, "ell": _hit_ell, "cyl": _hit_cyl, "pan": _hit_pan}


def _bound(kind, p):
    """Bounding spheres of primitive rows: (owner row [m], centre [m, 3], radius [m]).

    A long primitive (a pole, a building, a fence) gets a row of up to 16 spheres along its longest axis, so
    its few covered tiles are found instead of every tile within one big sphere."""
    half = p[:, 3:6].copy()
    if kind == "pan":
        half[:, 2] = 0.0
    long_axis = half.argmax(1)
    rows = np.arange(len(p))
    length = half[rows, long_axis]
    rest = np.sqrt((half**2).sum(1) - length**2)
    count = np.clip(np.ceil(length / np.maximum(rest, 0.15)), 1, 16).astype(int)
    owner = np.repeat(rows, count)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    seg = length[owner] / count[owner]
    offset = np.zeros((len(owner), 3))
    offset[np.arange(len(owner)), long_axis[owner]] = -length[owner] + (2 * k + 1) * seg
    centre = p[owner, :3] + _to_world(offset, p[owner, 6])
    return owner, centre, np.sqrt(rest[owner] ** 2 + seg**2) + 1e-3


def _cast(prims, origin, flat_dirs, tiles, zbuf):
    """Hits of every primitive: (pixel, t, normal, uv, cls, part, inst) arrays, only where the ray hits.

    `zbuf` (depth so far per pixel, the ground's at first) is lowered as batches are drawn.  Buildings go
    first: a primitive whose nearest possible point is behind everything drawn in a tile is not tested there.
    """
    ids, axis, half = tiles
    out = []
    batches = []
    for kind in _HIT:
        p = prims.arrays(kind)
        big = (p[:, 9] == BUILDING) if kind == "box" else np.zeros(len(p), bool)
        batches += [(kind, p[big]), (kind, p[~big])]
    batches.sort(key=lambda b: b[0] != "box" or not len(b[1]) or b[1][0, 9] != BUILDING)
    for kind, p in batches:
        if not len(p):
            continue
        owner, centre, radius = _bound(kind, p)
        v = centre - origin
        dist = np.linalg.norm(v, axis=1)
        reach = np.arcsin(np.clip(radius / np.maximum(dist, 1e-9), 0, 1))
        cosang = (v / np.maximum(dist, 1e-9)[:, None]) @ axis.T
        near = dist <= radius
        touch = (cosang >= np.cos(np.minimum(half[None, :] + reach[:, None], np.pi))) | near[:, None]
        touch &= (dist - radius)[:, None] < zbuf[ids].max(1)[None, :]
        starts = np.r_[0, np.cumsum(np.bincount(owner, minlength=len(p)))[:-1]]
        pi, ti = np.nonzero(np.logical_or.reduceat(touch, starts, axis=0))
        if not len(pi):
            continue
        pix = ids[ti].ravel()
        pr = p.astype(np.float32)[np.repeat(pi, ids.shape[1])]  # float32: half the memory traffic
        yaw = pr[:, 6]
        o = _to_local(origin[None, :].astype(np.float32) - pr[:, :3], yaw)
        d = _to_local(flat_dirs[pix], yaw)
        t, n, uv = _HIT[kind](o, d, pr)
        hit = np.isfinite(t) & (t < zbuf[pix])
        pix, t = pix[hit], t[hit]
        out.append((pix, t, _to_world(n[hit], yaw[hit]), uv[hit], pr[hit, 9], pr[hit, 10], pr[hit, 11]))
        order = np.argsort(-t)  # the nearest hit of a pixel is written last
        zbuf[pix[order]] = np.minimum(zbuf[pix[order]], t[order])
    return out


# ------------------------------------------------------------------------------------------------ ground
class _Street:
    """The street plan in road coordinates: lateral offset e (m, + right) and distance s along the road."""

    def __init__(self, rng):
        self.curv = rng.choice([0.0, rng.uniform(-0.006, 0.006)], p=[0.35, 0.65])
        alley = rng.random() < 0.15
        self.lanes = 1 if alley else int(rng.integers(2, 5))
        self.lane_w = rng.uniform(2.9, 3.5)
        self.two_way = (not alley) and rng.random() < 0.75
        self.park = [(not alley) and rng.random() < 0.45 for _ in range(2)]  # left, right parking lanes
        self.left = self.lanes * self.lane_w / 2 + 2.3 * self.park[0]
        self.right = self.lanes * self.lane_w / 2 + 2.3 * self.park[1]
        self.walk = [rng.uniform(1.2, 2.5) if alley else rng.uniform(2.0, 5.0) for _ in range(2)]
        self.verge = [0.0 if alley or rng.random() < 0.35 else rng.uniform(1.0, 5.0) for _ in range(2)]
        self.plaza = -1 if alley or rng.random() > 0.2 else int(rng.integers(2))  # side with a wide square
        if self.plaza >= 0:
            self.walk[self.plaza] = rng.uniform(12, 24)
        # Junctions: a cross street, a roundabout (with the cross street through it), or neither.
        self.junction = rng.choice(["none", "cross", "round"], p=[0.25, 0.5, 0.25] if not alley else [0.7, 0.3, 0])
        self.sj = rng.uniform(18, 40)
        self.wj = rng.uniform(6, 11)
        self.r_in, self.r_out = rng.uniform(4, 8), 0.0
        self.r_out = self.r_in + rng.uniform(6, 8)
        if self.junction == "round":
            self.sj = rng.uniform(28, 45)
        self.tram = (not alley) and rng.random() < 0.5
        self.tram_e = rng.choice([0.0, self.lanes * self.lane_w / 2 - self.lane_w / 2]) if self.tram else 0.0
        lane = rng.integers(self.lanes)
        self.cam_e = -self.lanes * self.lane_w / 2 + (lane + 0.5) * self.lane_w
        z0 = rng.uniform(15, 45)
        s1, s2 = (0.0, 0.0) if rng.random() < 0.3 else (rng.uniform(-0.07, 0.1), rng.uniform(-0.07, 0.07))
        z1 = z0 + rng.uniform(20, 60)
        # Ground height y = a + s * z on three segments (hills and crests), continuous.
        self.segments = ((-np.inf, z0, 0.0, 0.0), (z0, z1, -s1 * z0, s1), (z1, np.inf, s1 * (z1 - z0) - s2 * z1, s2))

    def centre(self, s):
        return -self.cam_e + self.curv * s * s / 2

    def heading(self, s):
        return np.arctan(self.curv * s)

    def ground_y(self, z):
        y = np.zeros_like(np.asarray(z, np.float64))
        for z0, z1, a, sl in self.segments:
            y = np.where((z >= z0) & (z < z1), a + sl * z, y)
        return y

    def place(self, e, s):
        """World (x, y on the ground, z) and heading of road coordinates (e, s)."""
        h = self.heading(s)
        x, z = self.centre(s) + e * np.cos(h), s - e * np.sin(h)
        return (float(x), float(self.ground_y(z)), float(z)), float(h)

    def in_junction(self, s, margin=0.0):
        if self.junction == "none":
            return False
        reach = self.wj / 2 if self.junction == "cross" else self.r_out
        return abs(s - self.sj) < reach + margin


def _ground(street, origin, dirs):
    """Ground hit of every ray: t (inf if none), normal, uv (world x, z), cls, part."""
    n_pix = len(dirs)
    t = np.full(n_pix, np.inf)
    slope = np.zeros(n_pix)
    for z0, z1, a, sl in street.segments:
        den = dirs[:, 1] - sl * dirs[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            tk = (a - origin[1] + sl * origin[2]) / den
        z = origin[2] + tk * dirs[:, 2]
        ok = (tk > 0) & (z >= z0) & (z < z1) & (z < _FAR) & (tk < t)
        t = np.where(ok, tk, t)
        slope = np.where(ok, sl, slope)
    hit = np.isfinite(t)
    tt = np.where(hit, t, 0)
    x, z = origin[0] + tt * dirs[:, 0], origin[2] + tt * dirs[:, 2]
    h = street.heading(z)
    e = (x - street.centre(z)) * np.cos(h)
    cls = np.full(n_pix, TERRAIN)
    part = np.zeros(n_pix, np.int64)
    walk_r, walk_l = street.right + street.walk[1], street.left + street.walk[0]
    cls = np.where((e >= -walk_l) & (e <= walk_r), SIDEWALK, cls)
    on_road = (e >= -street.left) & (e <= street.right)
    part = np.where((np.abs(e - street.right) < 0.25) | (np.abs(e + street.left) < 0.25), KERB, part)
    # Lane marks: dashed between lanes (solid in the middle of a two-way road), edge lines.
    lane_e = (e + street.lanes * street.lane_w / 2) / street.lane_w
    frac = np.abs(lane_e - np.round(lane_e)) * street.lane_w
    k = np.round(lane_e)
    solid = street.two_way and street.lanes % 2 == 0
    dashed = (z % 7.0 < 3.5) | ((k == street.lanes / 2) & solid) | (k == 0) | (k == street.lanes)
    marks = (frac < 0.08) & dashed & (k >= 0) & (k <= street.lanes)
    for side, sign in ((0, -1), (1, 1)):  # parking bays: short ticks across the lane
        if street.park[side]:
            inner = street.lanes * street.lane_w / 2
            marks |= (sign * e > inner) & (z % 5.5 < 0.12)
    if street.tram:
        for rail in (-0.72, 0.72):
            part = np.where(np.abs(e - street.tram_e - rail) < 0.06, RAIL, part)
    part = np.where(on_road & marks, MARK, part)
    cls = np.where(on_road, ROAD, cls)
    if street.junction != "none":
        dz = np.abs(z - street.sj)
        across = np.abs(e) > np.where(e > 0, street.right, street.left)
        corner = across & (dz < street.wj / 2 + 3.0)
        cls = np.where(corner, SIDEWALK, cls)
        cross = dz < street.wj / 2
        zebra = (np.abs(dz - street.wj / 2 - 1.8) < 1.2) & on_road & (e % 1.1 < 0.55)
        part = np.where(zebra, MARK, part)
        if street.junction == "round":
            cx = street.centre(street.sj)
            rad = np.hypot(x - cx, z - street.sj)
            ring = rad <= street.r_out
            cls = np.where(ring | cross, ROAD, cls)
            part = np.where(ring | cross, 0, part)
            cls = np.where(rad < street.r_in, SIDEWALK, cls)
            cls = np.where(rad < street.r_in - 0.7, TERRAIN, cls)
        else:
            cls = np.where(cross, ROAD, cls)
            part = np.where(cross & ~on_road, 0, part)
    normal = np.stack([np.zeros(n_pix), np.ones(n_pix), -slope], -1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return t, normal, np.stack([x, z], -1), cls, part


# ---------------------------------------------------------------------------------------------- objects
def _buildings(rng, st, pr):
    district = rng.choice(3)  # low houses, mixed, tall blocks
    lo, hi = ((4, 9), (6, 20), (12, 36))[district]
    for side, sign in ((0, -1), (1, 1)):
        edge = (st.right if sign > 0 else st.left) + st.walk[side] + st.verge[side]
        s = rng.uniform(-8, -2)
        while s < 140:
            w = rng.uniform(6, 18)
            if rng.random() < 0.22 or st.in_junction(s + w / 2, w / 2 + 2):
                if rng.random() < 0.6 and not st.in_junction(s + 2, 4):  # a tree in the gap
                    _tree(rng, st, pr, sign * (edge + rng.uniform(1, 4)), s + 2)
                s += rng.uniform(3, 9)
                continue
            depth, h = rng.uniform(9, 15), rng.uniform(lo, hi)
            e = sign * (edge + rng.uniform(0, 1.5) + depth / 2)
            pos, yaw = st.place(e, s + w / 2)
            inst = pr.inst()
            pr.box(pos, (depth, h, w), yaw, BUILDING, inst)
            kind = rng.random()
            if kind < 0.3:  # stepped: a narrower storey set back on the roof
                pr.box(
                    (pos[0], pos[1] + h, pos[2]), (depth * 0.6, rng.uniform(2, 6), w * 0.7), yaw, BUILDING, inst, ROOF
                )
            elif kind < 0.5:  # rounded roof
                pr.ell(
                    (pos[0], pos[1] + h, pos[2]), (depth * 0.5, rng.uniform(1.5, 4), w * 0.5), yaw, BUILDING, inst, ROOF
                )
            elif kind < 0.6 and h > 5:  # awning over the shop front
                pa, _ = st.place(e - sign * (depth / 2 + 0.7), s + w / 2)
                pr.box((pa[0], pa[1] + 2.6, pa[2]), (1.4, 0.25, w * 0.9), yaw, BUILDING, inst, ROOF)
            s += w + (rng.uniform(0, 1) if rng.random() < 0.7 else 0)
    if rng.random() < 0.3 and st.junction != "round":  # a facade closing the street ahead
        s = rng.uniform(70, 120)
        pos, yaw = st.place(0.0, s)
        pr.box(pos, (60, rng.uniform(8, 25), 10), yaw, BUILDING, pr.inst())
    for _ in range(rng.integers(6, 14)):  # distant skyline, tree lines and hills
        s, e = rng.uniform(150, 320), rng.uniform(-250, 250)
        pos, _ = st.place(e, s)
        r = rng.random()
        if r < 0.5:
            pr.box(
                pos,
                (rng.uniform(20, 60), rng.uniform(10, 60), rng.uniform(20, 50)),
                rng.uniform(0, 1),
                BUILDING,
                pr.inst(),
            )
        elif r < 0.75:
            pr.ell(pos, (rng.uniform(20, 60), rng.uniform(8, 18), 15), 0.0, VEGETATION, pr.inst())
        else:
            pr.ell(
                (pos[0], pos[1] - 10, pos[2] + 100),
                (rng.uniform(60, 150), rng.uniform(20, 45), 60),
                0.0,
                TERRAIN,
                pr.inst(),
            )


def _tree(rng, st, pr, e, s):
    pos, _ = st.place(e, s)
    inst = pr.inst()
    trunk = rng.uniform(1.8, 3.5)
    pr.cyl(pos, rng.uniform(0.12, 0.25), trunk + 0.5, VEGETATION, inst, CLOTH)
    r = rng.uniform(1.5, 3.2)
    top = (pos[0], pos[1] + trunk + r * 0.8, pos[2])
    kind = rng.random()
    if kind < 0.4:
        pr.ell(top, (r, r * rng.uniform(0.8, 1.3), r), 0.0, VEGETATION, inst)
    elif kind < 0.7:  # low-poly cube crown
        pr.box((pos[0], pos[1] + trunk, pos[2]), (2 * r, 1.8 * r, 2 * r), rng.uniform(0, 1.5), VEGETATION, inst)
    else:  # conifer: stacked ellipsoids
        for j in range(3):
            pr.ell(
                (pos[0], pos[1] + trunk + j * r * 0.8, pos[2]),
                (r * (1 - 0.25 * j), r * 0.6, r * (1 - 0.25 * j)),
                0.0,
                VEGETATION,
                inst,
            )


def _street_furniture(rng, st, pr):
    sides = [(0, -1, st.left), (1, 1, st.right)]
    # Street lamps (poles), spaced along one or both sides; or tram catenary masts.
    lamp_sides = [s for s in sides if rng.random() < 0.7] or [sides[1]]
    for _side, sign, edge in lamp_sides:
        spacing = rng.uniform(16, 28)
        for s in np.arange(rng.uniform(3, 12), 90, spacing):
            if st.in_junction(s, 1):
                continue
            pos, yaw = st.place(sign * (edge + 0.5), s)
            inst = pr.inst()
            h = rng.uniform(5.5, 8.5)
            pr.cyl(pos, 0.1, h, POLE, inst)
            arm = rng.uniform(1.2, 2.5)
            pa, _ = st.place(sign * (edge + 0.5 - arm / 2), s)
            pr.box((pa[0], pos[1] + h - 0.1, pa[2]), (arm, 0.12, 0.12), yaw, POLE, inst)
            pl, _ = st.place(sign * (edge + 0.5 - arm), s)
            pr.ell((pl[0], pos[1] + h - 0.15, pl[2]), (0.35, 0.12, 0.2), yaw, POLE, inst, LAMP_WARM)
    if st.tram:
        for s in np.arange(rng.uniform(4, 14), 100, rng.uniform(22, 32)):
            for sign, edge in ((-1, st.left), (1, st.right)):
                pos, yaw = st.place(sign * (edge + 0.3), s)
                pr.cyl(pos, 0.13, 7.0, POLE, pr.inst())
            pa, yaw = st.place(0.0, s)
            pr.box((pa[0], pa[1] + 6.6, pa[2]), (st.left + st.right + 0.6, 0.08, 0.08), yaw, POLE, pr.inst())
    # Traffic lights at the junction or at a mid-block crossing.
    if rng.random() < 0.8:
        s_light = st.sj - st.wj / 2 - 3.5 if st.junction != "none" else rng.uniform(15, 35)
        for side, sign, edge in sides:
            if rng.random() < 0.35 and side == 0:
                continue
            pos, yaw = st.place(sign * (edge + 0.6), s_light)
            inst = pr.inst()
            h = rng.uniform(2.6, 3.6)
            pr.cyl(pos, 0.09, h + (1.8 if side == 1 else 0), POLE, inst)
            heads = [(sign * (edge + 0.6), pos[1] + h)]
            if side == 1 and rng.random() < 0.5:  # mast arm over the road with a second head
                arm = rng.uniform(3, 6)
                pa, _ = st.place(sign * (edge + 0.6 - arm / 2), s_light)
                pr.box((pa[0], pos[1] + h + 1.7, pa[2]), (arm, 0.15, 0.15), yaw, POLE, inst)
                heads.append((sign * (edge + 0.6 - arm + 0.3), pos[1] + h + 0.6))
            lit = rng.choice([LAMP_RED, LAMP_WARM, LAMP_GREEN])
            for e, y in heads:
                pe, _ = st.place(e, s_light - 0.2)
                li = pr.inst()
                pr.box((pe[0], y, pe[2]), (0.4, 1.05, 0.35), yaw, LIGHT, li)
                for j, col in enumerate((LAMP_RED, LAMP_WARM, LAMP_GREEN)):
                    pr.ell(
                        (pe[0], y + 0.85 - 0.32 * j, pe[2] - 0.2),
                        (0.12, 0.12, 0.04),
                        yaw,
                        LIGHT,
                        li,
                        col if col == lit else PLATE,
                    )
    # Signs on posts: disc, triangle, diamond or rectangle.
    for _ in range(rng.integers(1, 5) if rng.random() < 0.95 else 0):
        side, sign, edge = sides[rng.integers(2)]
        s = rng.uniform(6, 45)
        pos, yaw = st.place(sign * (edge + rng.uniform(0.3, 1.0)), s)
        inst = pr.inst()
        big = rng.random() < 0.2
        h = rng.uniform(2.0, 2.8) if not big else rng.uniform(3, 4.5)
        pr.cyl(pos, 0.05 if not big else 0.1, h, POLE, inst)
        shape = 0 if big else int(rng.choice([0, 1, 2, 3]))
        w = rng.uniform(0.6, 0.95) if not big else rng.uniform(1.6, 2.6)
        pr.panel((pos[0], pos[1] + h - 0.1, pos[2] - 0.08), w, w if not big else w * 0.55, yaw, shape, SIGN, pr.inst())
    # Walls and fences along the outer edge of the sidewalk (or verge).
    for cls, p_draw in ((WALL, 0.65), (FENCE, 0.65)):
        if rng.random() > p_draw:
            continue
        for _ in range(rng.integers(1, 3)):
            side, sign, edge = sides[rng.integers(2)]
            edge += st.walk[side] + (st.verge[side] if rng.random() < 0.5 else 0)
            s0, ln = rng.uniform(-2, 30), rng.uniform(6, 22)
            if st.in_junction(s0 + ln / 2, ln / 2 + 1):
                s0 = st.sj + (st.r_out if st.junction == "round" else st.wj / 2) + 4
            pos, yaw = st.place(sign * (edge + 0.2), s0 + ln / 2)
            if cls == WALL:
                pr.box(pos, (rng.uniform(0.25, 0.5), rng.uniform(0.7, 2.4), ln), yaw, WALL, pr.inst())
            else:
                mesh = rng.random() < 0.5
                pr.panel(
                    pos,
                    ln,
                    rng.uniform(1.0, 2.0),
                    yaw - np.pi / 2,
                    4 if mesh else 5,
                    FENCE,
                    pr.inst(),
                    pitch=rng.uniform(0.15, 0.3) if mesh else rng.uniform(0.12, 0.25),
                )
    # Trees and hedges on the verges; the roundabout island gets a tree or a bush.
    for side, sign, edge in sides:
        if rng.random() < 0.6:
            for s in np.arange(rng.uniform(2, 8), 80, rng.uniform(8, 16)):
                if not st.in_junction(s, 2):
                    _tree(rng, st, pr, sign * (edge + st.walk[side] - 0.8 + st.verge[side] / 2), s)
        if st.verge[side] > 1.5 and rng.random() < 0.5:
            s0, ln = rng.uniform(0, 20), rng.uniform(5, 15)
            pos, yaw = st.place(sign * (edge + st.walk[side] + st.verge[side] / 2), s0)
            pr.box(pos, (st.verge[side] * 0.6, rng.uniform(0.6, 1.4), ln), yaw, VEGETATION, pr.inst())
    if st.junction == "round":
        pos, _ = st.place(0.0, st.sj)
        if rng.random() < 0.5:
            _tree(rng, st, pr, 0.0, st.sj)
        else:
            pr.ell((pos[0], pos[1], pos[2]), (st.r_in * 0.6, 1.2, st.r_in * 0.6), 0.0, VEGETATION, pr.inst())


def _person(pr, pos, yaw, height, cls=PERSON, inst=None):
    x, y, z = pos
    k = height / 1.75
    inst = pr.inst() if inst is None else inst
    c, s = np.cos(yaw), np.sin(yaw)
    for side in (-1, 1):
        lx, lz = x + side * 0.11 * k * c, z - side * 0.11 * k * s
        pr.cyl((lx, y, lz), 0.08 * k, 0.86 * k, cls, inst, CLOTH)
        ax, az = x + side * 0.27 * k * c, z - side * 0.27 * k * s
        pr.cyl((ax, y + 0.78 * k, az), 0.055 * k, 0.6 * k, cls, inst)
    pr.ell((x, y + 1.15 * k, z), (0.24 * k, 0.34 * k, 0.15 * k), yaw, cls, inst)
    pr.ell((x, y + 1.62 * k, z), (0.11 * k, 0.13 * k, 0.11 * k), yaw, cls, inst, SKIN)


def _two_wheeler(rng, pr, pos, yaw, motor, ridden):
    x, y, z = pos
    cls = MOTORCYCLE if motor else BICYCLE
    inst = pr.inst()
    c, s = np.cos(yaw), np.sin(yaw)
    wr = 0.32 if motor else 0.34
    half = 0.7 if motor else 0.55
    for j in (-1, 1):
        pr.ell((x + j * half * s, y + wr, z + j * half * c), (0.09 if motor else 0.04, wr, wr), yaw, cls, inst, TYRE)
    if motor:
        pr.ell((x, y + 0.68, z), (0.22, 0.28, 0.75), yaw, cls, inst)
        pr.ell((x + 0.85 * s, y + 0.85, z + 0.85 * c), (0.1, 0.1, 0.05), yaw, cls, inst, LAMP_WARM)
    else:
        pr.box((x, y + 0.62, z - 0.55 * c), (0.05, 0.06, 1.1), yaw, cls, inst)
        pr.box((x - 0.15 * s, y + 0.34, z - 0.15 * c), (0.04, 0.55, 0.05), yaw, cls, inst)
        pr.box((x + 0.5 * s, y + 0.9, z + 0.5 * c), (0.5, 0.04, 0.04), yaw, cls, inst)
    if ridden:
        ri = pr.inst()
        seat = y + (0.85 if motor else 0.95)
        pr.ell((x - 0.1 * s, seat + 0.35, z - 0.1 * c), (0.24, 0.36, 0.2), yaw, RIDER, ri, CLOTH)
        pr.ell((x, seat + 0.85, z), (0.13, 0.15, 0.13), yaw, RIDER, ri, SKIN if rng.random() < 0.4 else BODY)
        for j in (-1, 1):
            pr.ell((x + j * 0.16 * c, seat - 0.1, z - j * 0.16 * s), (0.08, 0.4, 0.12), yaw, RIDER, ri, CLOTH)


def _vehicle(rng, pr, pos, yaw, cls):
    """Car, truck, bus or tram standing on `pos`, heading `yaw`; boxy or rounded body with parts."""
    x, y, z = pos
    c, s = np.cos(yaw), np.sin(yaw)
    inst = pr.inst()

    def at(dz, dy=0.0, dx=0.0):
        return (x + dz * s + dx * c, y + dy, z + dz * c - dx * s)

    if cls == CAR:
        w, ln = rng.uniform(1.7, 1.95), rng.uniform(3.8, 4.8)
        if rng.random() < 0.5:  # boxy, low-poly
            pr.box(at(0, 0.25), (w, rng.uniform(0.65, 0.9), ln), yaw, CAR, inst)
            hc = rng.uniform(0.5, 0.8) if rng.random() < 0.8 else 1.1  # van-like
            pr.box(at(-0.2, 0.9 if hc < 1 else 0.85), (w * 0.9, hc, ln * rng.uniform(0.45, 0.7)), yaw, CAR, inst, GLASS)
        else:  # rounded
            pr.ell(at(0, 0.65), (w / 2, 0.42, ln / 2), yaw, CAR, inst)
            pr.ell(at(-0.2, 1.05), (w * 0.42, 0.38, ln * 0.3), yaw, CAR, inst, GLASS)
        wheels, wr = [(-ln * 0.32, 1), (ln * 0.32, 1)], 0.33
        lamps = (ln / 2, 0.75, w * 0.35)
    elif cls == TRUCK:
        w, ln = 2.5, rng.uniform(7, 10)
        pr.box(at(ln / 2 - 1.2, 0.5), (w, 2.5, 2.4), yaw, TRUCK, inst)
        pr.box(at(ln / 2 - 1.0, 1.7), (w * 0.9, 0.9, 0.1), yaw, TRUCK, inst, GLASS)
        pr.box(at(-1.0, 0.7), (w + 0.05, rng.uniform(2.6, 3.4), ln - 2.6), yaw, TRUCK, inst, ROOF)
        wheels, wr = [(ln / 2 - 1.3, 1), (-ln / 2 + 1.8, 1), (-ln / 2 + 0.8, 1)], 0.5
        lamps = (ln / 2, 0.9, w * 0.4)
    else:  # bus or tram: long body with a window band
        tram = cls == TRAIN
        w, ln = (2.4, rng.uniform(18, 32)) if tram else (2.55, rng.uniform(10, 13))
        hgt = 3.3 if tram else (rng.uniform(3.0, 3.3) if rng.random() < 0.8 else 4.3)
        n_sec = 3 if tram else 1
        for j in range(n_sec):
            dz = -ln / 2 + (j + 0.5) * ln / n_sec
            pr.box(at(dz, 0.35), (w, hgt - 0.35, ln / n_sec - (0.3 if tram else 0)), yaw, cls, inst)
        for band in ((1.3, 2.6),) if hgt < 4 else ((1.2, 2.1), (2.6, 3.6)):
            pr.box(at(0, band[0]), (w + 0.04, band[1] - band[0], ln - 0.8), yaw, cls, inst, GLASS)
        if tram:
            pr.box(at(0, 3.3), (0.15, 0.6, 1.5), yaw, TRAIN, inst)
        wheels, wr = ([(-ln / 2 + 2.5, 1), (ln / 2 - 2.5, 1)] if not tram else []), 0.5
        lamps = (ln / 2, 0.9, w * 0.38)
    for dz, _ in wheels:
        for side in (-1, 1):
            pr.ell(at(dz, wr, side * (w / 2 - 0.05)), (0.14, wr, wr), yaw, cls, inst, TYRE)
    # Lamps: red at the back, warm at the front (both ends are drawn; the camera sees one).
    for end, part in ((-1, LAMP_RED), (1, LAMP_WARM)):
        for side in (-1, 1):
            pr.box(
                at(end * (lamps[0] + 0.01) - end * 0.02, lamps[1], side * lamps[2]),
                (0.28, 0.15, 0.06),
                yaw,
                cls,
                inst,
                part,
            )


def _traffic(rng, st, pr):
    lanes = [(-st.lanes * st.lane_w / 2 + (i + 0.5) * st.lane_w) for i in range(st.lanes)]
    oncoming = [i < st.lanes // 2 for i in range(st.lanes)] if st.two_way else [False] * st.lanes
    kinds = [CAR] * int(rng.integers(2, 7))
    for cls, p in ((TRUCK, 0.55), (BUS, 0.5), (MOTORCYCLE, 0.3)):
        if rng.random() < p:
            kinds.append(cls)
    if st.tram and rng.random() < 0.8:
        s = rng.uniform(10, 45)
        pos, yaw = st.place(st.tram_e, s)
        _vehicle(rng, pr, pos, yaw + (np.pi if rng.random() < 0.4 else 0), TRAIN)
    taken = []
    for cls in kinds:
        for _ in range(6):
            i = int(rng.integers(st.lanes))
            s = rng.uniform(7, 60)
            if all(abs(s - t) > 14 or i != j for t, j in taken):
                break
        else:
            continue
        taken.append((s, i))
        pos, yaw = st.place(lanes[i] + rng.uniform(-0.3, 0.3), s)
        yaw += (np.pi if oncoming[i] else 0) + rng.uniform(-0.05, 0.05)
        if cls == MOTORCYCLE:
            _two_wheeler(rng, pr, pos, yaw, True, True)
        else:
            _vehicle(rng, pr, pos, yaw, cls)
    # Parked cars in the parking lanes.
    for side, sign in ((0, -1), (1, 1)):
        if st.park[side]:
            e = sign * (st.lanes * st.lane_w / 2 + 1.15)
            for s in np.arange(rng.uniform(2, 8), 70, rng.uniform(5.5, 9)):
                if rng.random() < 0.7 and not st.in_junction(s, 3):
                    pos, yaw = st.place(e, s)
                    _vehicle(rng, pr, pos, yaw + rng.choice([0, np.pi]), CAR)
    # Cross traffic (side views) on the cross street.
    if st.junction != "none":
        for _ in range(rng.integers(0, 3)):
            e = rng.uniform(-25, 25)
            pos, yaw = st.place(e, st.sj + rng.uniform(-2, 2))
            cls = rng.choice([CAR, CAR, BUS, TRUCK])
            _vehicle(rng, pr, pos, yaw + np.pi / 2 * rng.choice([-1, 1]), cls)
    # Cyclists and motorcyclists near the right edge or crossing; parked bicycles and scooters on sidewalks.
    if rng.random() < 0.75:
        for _ in range(rng.integers(1, 3)):
            motor = rng.random() < 0.35
            if st.junction != "none" and rng.random() < 0.5:
                pos, yaw = st.place(rng.uniform(-12, 12), st.sj + rng.uniform(-2, 2))
                yaw += np.pi / 2 * rng.choice([-1, 1])
            else:
                pos, yaw = st.place(st.lanes * st.lane_w / 2 - 0.8, rng.uniform(6, 30))
                yaw += rng.uniform(-0.3, 0.3) + (np.pi if rng.random() < 0.2 else 0)
            _two_wheeler(rng, pr, pos, yaw, motor, True)
    for cls, p in ((BICYCLE, 0.45), (MOTORCYCLE, 0.3)):
        if rng.random() < p:
            for _ in range(rng.integers(1, 4)):
                side, sign = (0, -1) if rng.random() < 0.5 else (1, 1)
                edge = st.right if sign > 0 else st.left
                pos, yaw = st.place(sign * (edge + st.walk[side] * rng.uniform(0.4, 0.9)), rng.uniform(5, 25))
                _two_wheeler(rng, pr, pos, yaw + np.pi / 2 + rng.uniform(-0.4, 0.4), cls == MOTORCYCLE, False)


def _people(rng, st, pr):
    n = int(rng.integers(2, 11)) if rng.random() < 0.95 else 0
    for _ in range(n):
        r = rng.random()
        if r < 0.2 and st.junction != "none":  # on the zebra crossing
            e, s = rng.uniform(-st.left, st.right), st.sj - st.wj / 2 - 1.8
        else:
            side = st.plaza if (st.plaza >= 0 and r < 0.6) else int(rng.integers(2))
            sign = 1 if side == 1 else -1
            edge = st.right if sign > 0 else st.left
            e, s = sign * (edge + rng.uniform(0.5, st.walk[side] - 0.3)), rng.uniform(3, 35)
        pos, yaw = st.place(e, s)
        _person(pr, pos, yaw + rng.uniform(-np.pi, np.pi), rng.uniform(1.45, 1.95))


# ------------------------------------------------------------------------------------------------ scene
def render_town(rng, height, width):
    """A random town scene: `Town` with label [H, W] uint8 and per-pixel depth, normal, uv, part, inst."""
    dirs = _camera(rng, height, width)
    hp, wp, _ = dirs.shape
    flat = dirs.reshape(-1, 3)
    st = _Street(rng)
    cam_h = rng.uniform(1.1, 3.2)  # low car, dashcam, van, bus
    origin = np.array([0.0, cam_h, 0.0])
    pr = _Prims()
    _buildings(rng, st, pr)
    _street_furniture(rng, st, pr)
    _traffic(rng, st, pr)
    _people(rng, st, pr)
    tg, ng, uvg, cg, partg = _ground(st, origin, flat)
    ok = np.isfinite(tg)
    pix = np.arange(len(flat))
    hits = [(pix[ok], tg[ok], ng[ok], uvg[ok], cg[ok], partg[ok], np.zeros(ok.sum()))]
    hits += _cast(pr, origin, flat.astype(np.float32), _tiles(dirs), tg.copy())
    p, t, n, uv, c, part, inst = (np.concatenate(a) for a in zip(*hits))
    order = np.lexsort((t, p))
    p, t = p[order], t[order]
    first = np.r_[True, p[1:] != p[:-1]]
    sel = order[first]
    npx = len(flat)
    depth = np.full(npx, np.inf)
    label = np.full(npx, SKY, np.uint8)
    normal = np.zeros((npx, 3))
    normal[:, 1] = -1.0
    uvs = np.zeros((npx, 2))
    parts = np.zeros(npx, np.uint8)
    insts = np.zeros(npx, np.int64)
    q = p[first]
    depth[q], label[q], normal[q], uvs[q] = t[first], c[sel], n[sel], uv[sel]
    parts[q], insts[q] = part[sel], inst[sel]
    # A normal facing away from the ray (seen from inside a shell) is flipped so lighting treats it as a front face.
    flip = (normal * flat).sum(1) > 0
    normal[flip] *= -1

    def crop(a):
        return a.reshape((hp, wp) + a.shape[1:])[:height, :width]

    el = np.radians(rng.uniform(8, 55))
    az = rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    return Town(
        crop(label), crop(depth), crop(normal), crop(uvs), crop(parts), crop(insts), crop(flat), sun, height, width
    )
