"""Appearance of the "towns" family (private): six styles with their own palettes, light, weather and optics.

`shade(town, style, rng)` turns the geometry buffers of `_towns_scene.render_town` into an RGB image.  Only
appearance depends on the style; the label map never does.
"""

import numpy as np

from mgml_tf.synthetic import _towns_scene as ts

_CLASS_KEYS = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "light",
    "sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
_PART_KEYS = ("glass", "tyre", "mark", "rail", "kerb", "skin", "cloth", "trunk", "plate")


def _rgb(text):
    """'a0b1c2 ffffff' -> float array [n, 3] in [0, 1]."""
    return np.array([[int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)] for h in text.split()], np.float32)


class TownStyle:
    """One domain of the towns family.

    palette: {class key: 'hex hex ...'} (each instance picks one colour); parts: {part key: 'hex ...'};
    sky: (zenith, horizon) hex; ambient, diffuse: light terms; sun: sun colour hex; sun_elevation: degrees
    (low, high) and sun_ahead: the sun is drawn in front of the camera (for glare); levels: posterised light
    (0: smooth); texture: noise amplitude; haze: (hex, visibility in m) or None; windows: share of lit windows
    and their hex; snow: snow cover on up-facing surfaces and falling flakes; wet: mirror of the sky on the
    road; outline: ink edges; grade: (r, g, b gains, saturation, contrast, gamma); optics: {effect: amount}
    with motion (px), chroma (px), jpeg (0..1), flare (0..1), vignette, noise, grain, blur (px), drops (count).
    """

    def __init__(
        self,
        name,
        role,
        palette,
        parts,
        sky,
        ambient=0.6,
        diffuse=0.5,
        sun="ffffff",
        sun_elevation=(15, 60),
        sun_ahead=False,
        levels=0,
        texture=0.05,
        haze=None,
        windows=(0.0, "ffffff"),
        snow=False,
        wet=False,
        outline=0.0,
        grade=(1, 1, 1, 1, 1, 1),
        optics=None,
        look="",
    ):
        self.name, self.role, self.look = name, role, look
        cols = [_rgb(palette.get(k, "000000")) for k in _CLASS_KEYS]
        self.palette = np.stack([np.resize(c, (4, 3)) for c in cols])  # [19, 4, 3], cycled to 4 choices
        self.parts = {k: _rgb(v) for k, v in parts.items()}
        self.sky = _rgb(" ".join(sky))
        self.ambient, self.diffuse, self.sun = ambient, diffuse, _rgb(sun)[0]
        self.sun_elevation, self.sun_ahead = sun_elevation, sun_ahead
        self.levels, self.texture, self.haze = levels, texture, haze
        self.windows = (windows[0], _rgb(windows[1])[0])
        self.snow, self.wet, self.outline, self.grade = snow, wet, outline, grade
        self.optics = dict(optics or {})

    def __repr__(self):
        return f"TownStyle({self.name!r}, {self.role})"


STYLES = {
    s.name: s
    for s in (
        TownStyle(
            "clay_lowpoly",
            "source",
            look="pastel clay models, faceted light in 4 steps, clean, hard sun",
            palette={
                "road": "a59cb5 9d96ad",
                "sidewalk": "efd5b2 e8c9a0",
                "building": "b8e0c8 f3c4c4 f5e2a0 c7d7f0",
                "wall": "cdb8ea d8c3f2",
                "fence": "e3a56b d99a5f",
                "pole": "f4f1ea e9e4d8",
                "light": "41597f",
                "sign": "ff9f87 7fc8f8",
                "vegetation": "86d08c 6fc07a",
                "terrain": "cde8a0 bfe08e",
                "person": "ff8fab 9b5de5 f9c74f",
                "rider": "f15bb5 f3722c",
                "car": "ff9f1c 2ec4b6 e71d36 90be6d",
                "truck": "cbeff0 a8dadc",
                "bus": "ffbf69 ffd6a5",
                "train": "9d8df1 b8b0f5",
                "motorcycle": "ef476f",
                "bicycle": "118ab2 06aed5",
            },
            parts={
                "glass": "5a7fa8",
                "tyre": "4a4453",
                "mark": "ffffff",
                "rail": "8f8a99",
                "kerb": "d6cfc4",
                "skin": "f2c6a0",
                "cloth": "6d597a 3d5a80 f28482",
                "trunk": "b07d57",
                "plate": "2b2d42",
            },
            sky=("7fb8f0", "d9efff"),
            ambient=0.6,
            diffuse=0.55,
            sun="fff3e0",
            levels=4,
            texture=0.015,
        ),
        TownStyle(
            "snow_sim",
            "source",
            look="winter simulator: snow on every up-facing surface, falling snow, grey sky, "
            "cold cast, soft light, light haze",
            palette={
                "road": "9aa3ad 8c959f",
                "sidewalk": "e4e9ef dfe5ec",
                "building": "8a6b58 6e7f8b 9c9a8a a34f3f",
                "wall": "b9b1a4 a8a091",
                "fence": "5b4a3c 3f4a52",
                "pole": "2f3a45 505a63",
                "light": "1f2a1f",
                "sign": "2a62b8 c22f2f",
                "vegetation": "2e4b3c 3c5a47",
                "terrain": "eef2f6 e6ecf2",
                "person": "3a2f5b 7a1f2b 1f4e5f",
                "rider": "b3541e 2f5d3a",
                "car": "3c3f58 8c7f90 5a1a1a 1f1f2e",
                "truck": "c8b560 6a7b4f",
                "bus": "c2462f 2c5e7e",
                "train": "d0a21f a9b6c0",
                "motorcycle": "242424 6b2d5c",
                "bicycle": "0f7c6b 9a2a2a",
            },
            parts={
                "glass": "33404f",
                "tyre": "1b1b1b",
                "mark": "f6f7f2",
                "rail": "5e6166",
                "kerb": "c4c9cf",
                "skin": "e0b899",
                "cloth": "222831 4d3b2a",
                "trunk": "3e2f25",
                "plate": "101010",
            },
            sky=("aab3bf", "dde2e8"),
            ambient=0.78,
            diffuse=0.25,
            sun="f4f8ff",
            texture=0.05,
            haze=("d5dbe2", 160.0),
            snow=True,
            grade=(0.95, 0.98, 1.06, 0.9, 0.95, 1.0),
            optics={"noise": 0.015},
        ),
        TownStyle(
            "neon_comic",
            "source",
            look="saturated neon comic: yellow sky, 3 light steps, ink outlines",
            palette={
                "road": "3b3357 443a66",
                "sidewalk": "14b3d6 20c4e0",
                "building": "ff2e88 8a3ffc 3a86ff ffb703",
                "wall": "fb5607 ff7b00",
                "fence": "c6ff00 a3e635",
                "pole": "ffffff f0f0f0",
                "light": "000000",
                "sign": "ff006e ffbe0b",
                "vegetation": "2bb800 38d39f",
                "terrain": "d4ff3a b5e61d",
                "person": "ff4d6d 7209b7 ff9e00",
                "rider": "f72585 4cc9f0",
                "car": "06d6a0 ef476f ffd166 118ab2",
                "truck": "9b5de5 00f5d4",
                "bus": "fee440 f15bb5",
                "train": "00bbf9 3a0ca3",
                "motorcycle": "ff006e",
                "bicycle": "80ff72 7ae582",
            },
            parts={
                "glass": "1b1f3b",
                "tyre": "111111",
                "mark": "fdfdfd",
                "rail": "8d99ae",
                "kerb": "ffffff",
                "skin": "ffcdb2",
                "cloth": "240046 3c096c",
                "trunk": "6a040f",
                "plate": "222222",
            },
            sky=("ffb300", "ffe66d"),
            ambient=0.65,
            diffuse=0.45,
            levels=3,
            texture=0.0,
            outline=1.0,
            grade=(1, 1, 1, 1.2, 1.1, 1.0),
        ),
        TownStyle(
            "dusk_dashcam",
            "target",
            look="dusk dashcam: low sun with glare and lens flare, lit windows and lamps, "
            "JPEG blockiness, vignette, sensor noise",
            palette={
                "road": "4a4a52 3f4047",
                "sidewalk": "7b7570 6e6963",
                "building": "6b5b50 4f4a4f 7d6a5c 5a6570",
                "wall": "6f6258 5d5a55",
                "fence": "4c4640 5e564c",
                "pole": "3a3a3f 56565c",
                "light": "141414",
                "sign": "1f4fa8 e0e0e0",
                "vegetation": "344a2a 2e3d2a",
                "terrain": "5a5a3a 4e5236",
                "person": "2b2b35 5c3a2e 38404a",
                "rider": "3b2f2f 24303a",
                "car": "b8bcc2 1d1f24 5b1215 23314f",
                "truck": "c9c9c0 7a6c56",
                "bus": "d9d4c4 2f5a3d",
                "train": "c4c7ca 8a1c1c",
                "motorcycle": "1a1a1a 44444c",
                "bicycle": "2c2c2c 6a6a70",
            },
            parts={
                "glass": "1c232c",
                "tyre": "121212",
                "mark": "cfcab8",
                "rail": "6b6660",
                "kerb": "8a847c",
                "skin": "c89a7c",
                "cloth": "1e2230 3b3b3b",
                "trunk": "3a2c22",
                "plate": "0f0f0f",
            },
            sky=("28306b", "f28c4e"),
            ambient=0.4,
            diffuse=0.6,
            sun="ffb070",
            sun_elevation=(1, 8),
            sun_ahead=True,
            texture=0.06,
            windows=(0.35, "ffc46b"),
            grade=(1.05, 0.95, 0.9, 1.0, 1.05, 1.1),
            optics={"flare": 0.8, "jpeg": 0.7, "vignette": 0.35, "noise": 0.02},
        ),
        TownStyle(
            "hazy_sepia",
            "target",
            look="sepia haze: brown palette, dense haze, chromatic aberration, film grain, motion blur",
            palette={
                "road": "6d6256 5f554a",
                "sidewalk": "a39581 988a76",
                "building": "9c8b72 857866 b09c80 766a5c",
                "wall": "a08e74",
                "fence": "6e5f4d",
                "pole": "5a5048",
                "light": "2a2420",
                "sign": "8a6a3a c2b28a",
                "vegetation": "6d6a3c 5c5a34",
                "terrain": "a08f62 948557",
                "person": "5a4636 7a5a40 3e3a36",
                "rider": "6a4a30 4a3a30",
                "car": "c7b89d 3b342c 7a4a32 5c5a52",
                "truck": "b5a58a 6c5c44",
                "bus": "c49a5a 8a7a5a",
                "train": "a89070 6a5444",
                "motorcycle": "3a3028 5a4a3a",
                "bicycle": "4a3c30 7a6a58",
            },
            parts={
                "glass": "3a342c",
                "tyre": "1e1a16",
                "mark": "d8cdb4",
                "rail": "6a5e50",
                "kerb": "b0a48c",
                "skin": "b48a68",
                "cloth": "2e2a26 4a3e32",
                "trunk": "4a3a2a",
                "plate": "1a1612",
            },
            sky=("c6b497", "e3d6bf"),
            ambient=0.6,
            diffuse=0.45,
            sun="fff0d0",
            texture=0.05,
            haze=("cbbb9e", 70.0),
            grade=(1.08, 1.0, 0.85, 0.55, 0.95, 1.0),
            optics={"chroma": 2, "grain": 0.025, "motion": 3},
        ),
        TownStyle(
            "teal_drizzle",
            "target",
            look="teal drizzle: wet mirror-like road, drops on the lens, green-teal cast, soft focus, noise",
            palette={
                "road": "2e3b3d 364547",
                "sidewalk": "5e7470 546a66",
                "building": "3f6f6a 6e8c84 8fa39a 4d5e6e",
                "wall": "587a70",
                "fence": "2f4f4a",
                "pole": "22302f",
                "light": "0d1a18",
                "sign": "1aa39a eaf2ef",
                "vegetation": "1f5c3a 2a6b45",
                "terrain": "4e7a4f 5b8a58",
                "person": "1d2f33 5a2e4a 2e5266",
                "rider": "4a1f3c 1f4a5a",
                "car": "d7e3e0 1a2426 2f5f7a 6a2a3a",
                "truck": "9fb8b0 3e5a50",
                "bus": "e0c341 1f6f8b",
                "train": "59a5b0 e6e6e6",
                "motorcycle": "0f1b1c 6f2f4f",
                "bicycle": "1c3b3a 8ab0a8",
            },
            parts={
                "glass": "1a2a2c",
                "tyre": "0c1212",
                "mark": "c8d8d2",
                "rail": "51605e",
                "kerb": "7a8e8a",
                "skin": "b58f7a",
                "cloth": "1a2224 2c3a3c",
                "trunk": "2a2a22",
                "plate": "0a0f0f",
            },
            sky=("6f8c8a", "b3c8c2"),
            ambient=0.7,
            diffuse=0.3,
            sun="e8fff8",
            texture=0.06,
            haze=("9fb5b0", 120.0),
            wet=True,
            grade=(0.9, 1.05, 1.02, 0.85, 1.0, 1.0),
            optics={"drops": 14, "blur": 1, "noise": 0.03, "chroma": 1},
        ),
    )
}
SOURCE_STYLES = tuple(n for n, s in STYLES.items() if s.role == "source")
TARGET_STYLES = tuple(n for n, s in STYLES.items() if s.role == "target")


def _hash(*ints):
    """Deterministic pseudo-random floats in [0, 1) from integer arrays (no rng state involved)."""
    h = np.uint32(2166136261)
    for a in ints:
        h = (h ^ np.asarray(a).astype(np.uint32)) * np.uint32(16777619)
        h ^= h >> np.uint32(13)
    return (h & np.uint32(0xFFFFFF)).astype(np.float32) / np.float32(0x1000000)


def _box_blur(img, k, axis):
    """Box blur of odd width k along one axis (edge-clamped)."""
    if k <= 1:
        return img
    pad = [(0, 0)] * img.ndim
    pad[axis] = (k // 2, k // 2)
    c = np.cumsum(np.pad(img, pad, mode="edge"), axis=axis, dtype=np.float32)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    n = img.shape[axis]
    return (np.take(c, np.arange(k, k + n), axis=axis) - np.take(c, np.arange(n), axis=axis)) / k


def _surface_colour(town, style, rng):
    label, part, inst, uv = town.label, town.part, town.inst, town.uv.astype(np.float32)
    pick = (_hash(inst, 7) * 4).astype(np.int64)
    pick = np.where(inst == 0, rng.integers(4), pick)  # the ground: one colour per class and image
    col = style.palette[label, pick]
    parts = style.parts
    for p, key in (
        (ts.GLASS, "glass"),
        (ts.TYRE, "tyre"),
        (ts.MARK, "mark"),
        (ts.RAIL, "rail"),
        (ts.KERB, "kerb"),
        (ts.SKIN, "skin"),
        (ts.PLATE, "plate"),
    ):
        m = part == p
        col[m] = parts[key][0]
    cloth = part == ts.CLOTH
    trunk = cloth & (label == ts.VEGETATION)
    cl = parts["cloth"]
    col[cloth] = cl[(pick[cloth] % len(cl))]
    col[trunk] = parts["trunk"][0]
    col[part == ts.ROOF] *= 0.8
    # Facade windows: a grid in facade metres, spacing per building; none on the ground floor.
    u, v = uv[..., 0], uv[..., 1]
    facade = (label == ts.BUILDING) & (part == 0) & (np.abs(town.normal[..., 1]) < 0.5)
    sx = 2.2 + 2.0 * _hash(inst, 3)
    sy = 2.8 + 0.8 * _hash(inst, 5)
    fu, fv = (u % sx) / sx, (v % sy) / sy
    window = facade & (fu > 0.25) & (fu < 0.75) & (fv > 0.3) & (fv < 0.8) & (v > 3.2)
    col[window] = parts["glass"][0]
    # Surface texture: value noise on 0.5 m cells (fine leaves on vegetation), diamond paving on sidewalks.
    cell = np.where(label == ts.VEGETATION, 0.25, 0.5).astype(np.float32)
    noise = _hash(np.floor(u / cell).astype(np.int64), np.floor(v / cell).astype(np.int64), inst) - 0.5
    amp = style.texture * np.where(label == ts.VEGETATION, 3.0, 1.0)
    col = col * (1 + amp[..., None] * noise[..., None] * 2)
    paving = (label == ts.SIDEWALK) & (part == 0) & ((((u + v) / 0.9) % 1 < 0.08) | (((u - v) / 0.9) % 1 < 0.08))
    col[paving] *= 0.85
    return col, window


def shade(town, style, rng):
    """RGB uint8 [H, W, 3] of a `Town` in `style` (rng draws only appearance: sun, lit windows, noise)."""
    h, w = town.label.shape
    label, part, dirs, depth, normal = town.label, town.part, town.dirs.astype(np.float32), town.depth, town.normal
    col, window = _surface_colour(town, style, rng)
    # Sun: the style decides its height; glare styles put it ahead of the camera.
    el = np.radians(rng.uniform(*style.sun_elevation))
    az = rng.uniform(-0.5, 0.5) if style.sun_ahead else np.arctan2(town.sun[0], town.sun[2])
    sun = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], np.float32)
    lam = np.clip((normal.astype(np.float32) * sun).sum(-1), 0, 1)
    if style.levels:
        lam = np.floor(lam * style.levels + 0.5) / style.levels
    light = style.ambient + style.diffuse * lam
    img = col * light[..., None] * style.sun
    if style.snow:  # snow lies on what faces up, except on the driven road, where tyre tracks stay dark
        up = np.clip((normal[..., 1] - 0.55) * 3, 0, 1).astype(np.float32)
        tracks = (label == ts.ROAD) & (np.abs((town.uv[..., 0] % 1.7) - 0.85) < 0.35)
        up = np.where(tracks, up * 0.25, up * 0.9)
        img = img * (1 - up[..., None]) + np.float32(0.93) * up[..., None]
    # Sky: zenith-to-horizon gradient with a glow around the sun.
    sky = label == ts.SKY
    elev = np.clip(dirs[..., 1] * 2.2, 0, 1) ** 0.7
    grad = style.sky[1] * (1 - elev[..., None]) + style.sky[0] * elev[..., None]
    cos_sun = (dirs * sun).sum(-1)
    glow = np.clip((cos_sun - 0.9) * 10, 0, 1) ** 2
    grad = grad + glow[..., None] * style.sun * 0.6
    img[sky] = grad[sky]
    if style.wet:  # a wet road mirrors the sky, more at grazing angles
        fres = np.clip(1 - np.abs(dirs[..., 1]) * 4, 0, 1) * 0.6
        mirror = style.sky[1] * (1 - fres[..., None]) * 0.3 + style.sky[1] * fres[..., None]
        m = (label == ts.ROAD)[..., None]
        img = np.where(m, img * (1 - fres[..., None] * 0.7) + mirror * fres[..., None] * 0.7, img)
    # Emission: lamps, traffic lights, lit windows.
    cell_u, cell_v = (np.floor(town.uv[..., k] / s).astype(np.int64) for k, s in ((0, 2.6), (1, 3.0)))
    lit = window & (_hash(town.inst, cell_u, cell_v) < style.windows[0])
    img[lit] = style.windows[1]
    lamps = np.isin(part, ts.EMISSIVE_PARTS)
    lamp_col = {ts.LAMP_RED: (1.0, 0.15, 0.1), ts.LAMP_WARM: (1.0, 0.85, 0.55), ts.LAMP_GREEN: (0.2, 1.0, 0.5)}
    for p, c in lamp_col.items():
        img[part == p] = c
    if style.haze is not None:
        hc, vis = _rgb(style.haze[0])[0], style.haze[1]
        f = 1 - np.exp(-np.where(np.isfinite(depth), depth, 1e4) / vis).astype(np.float32)
        f = np.where(sky, 0.6 * f, f)
        img = img * (1 - f[..., None]) + hc * f[..., None]
    if style.outline:
        edge = np.zeros((h, w), bool)
        dz = np.where(np.isfinite(depth), depth, 1e4)
        for a in (0, 1):
            d1 = np.diff(label.astype(np.int16), axis=a) != 0
            d1 |= np.abs(np.diff(np.log(dz + 1), axis=a)) > 0.15
            sl = (slice(None, -1), slice(None)) if a == 0 else (slice(None), slice(None, -1))
            edge[sl] |= d1
        img[edge] *= 1 - 0.85 * style.outline
    img = _grade(img, style.grade)
    img = _optics(img, style.optics, rng, sun, dirs, lamps | lit)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _grade(img, grade):
    r, g, b, sat, contrast, gamma = grade
    img = img * np.array([r, g, b], np.float32)
    grey = img.mean(-1, keepdims=True)
    img = grey + (img - grey) * sat
    img = 0.5 + (img - 0.5) * contrast
    return np.clip(img, 0, 1) ** (1 / gamma)


def _optics(img, o, rng, sun, dirs, emissive):
    h, w, _ = img.shape
    if o.get("blur"):
        k = 2 * int(o["blur"]) + 1
        img = _box_blur(_box_blur(img, k, 0), k, 1)
    if o.get("motion"):
        img = _box_blur(img, 2 * int(o["motion"]) + 1, 1)
    if emissive.any():  # bloom around light sources
        glow = _box_blur(_box_blur(img * emissive[..., None], 7, 0), 7, 1)
        img = img + glow * 0.8
    if o.get("flare"):  # glare around the sun and ghost discs mirrored through the image centre
        cos_sun = (dirs * sun).sum(-1)
        img = img + (o["flare"] * np.clip((cos_sun - 0.85) / 0.15, 0, 1) ** 3)[..., None] * np.float32(0.9)
        iy, ix = np.unravel_index(np.argmax(cos_sun), cos_sun.shape)
        if cos_sun[iy, ix] > 0.97:
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            for k, tint in ((0.4, (0.5, 0.3, 0.9)), (-0.3, (0.3, 0.8, 0.5)), (-0.8, (0.9, 0.6, 0.2))):
                cy, cx = h / 2 + k * (iy - h / 2), w / 2 + k * (ix - w / 2)
                r = (0.03 + 0.04 * abs(k)) * w
                disc = np.clip(1 - np.hypot(yy - cy, xx - cx) / r, 0, 1) ** 0.5
                img = img + disc[..., None] * np.array(tint, np.float32) * 0.18 * o["flare"]
    if o.get("drops"):  # water drops on the lens: blurred, slightly brightened discs
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        soft = _box_blur(_box_blur(img, 9, 0), 9, 1)
        for _ in range(int(o["drops"])):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.02, 0.07) * w
            m = (np.hypot(yy - cy, xx - cx) < r)[..., None]
            img = np.where(m, soft * 1.08 + 0.03, img)
    if o.get("chroma"):  # lateral chromatic aberration: red scaled out, blue scaled in about the centre
        c = o["chroma"]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for ch, s in ((0, -1), (2, 1)):
            k = 1 + s * c / w * 2
            sy = np.clip(((yy - h / 2) * k + h / 2 + 0.5).astype(np.int64), 0, h - 1)
            sx = np.clip(((xx - w / 2) * k + w / 2 + 0.5).astype(np.int64), 0, w - 1)
            img[..., ch] = img[sy, sx, ch]
    if o.get("vignette"):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
        img = img * (1 - o["vignette"] * np.clip(r2 / 2, 0, 1))[..., None]
    if o.get("noise"):
        img = img + rng.normal(0, o["noise"], img.shape).astype(np.float32)
    if o.get("grain"):  # film grain: luminance only, coarser than one pixel
        g = rng.normal(0, o["grain"], ((h + 1) // 2, (w + 1) // 2)).astype(np.float32)
        img = img + np.repeat(np.repeat(g, 2, 0), 2, 1)[:h, :w, None]
    if o.get("jpeg"):  # block artefacts: 8x8 block means of the colour difference, stepped luma
        a = o["jpeg"]
        hb, wb = -(-h // 8) * 8, -(-w // 8) * 8
        pad = np.pad(img, ((0, hb - h), (0, wb - w), (0, 0)), mode="edge")
        y = pad.mean(-1, keepdims=True)
        blocks = (pad - y).reshape(hb // 8, 8, wb // 8, 8, 3).mean((1, 3), keepdims=True)
        chroma = np.broadcast_to(blocks, (hb // 8, 8, wb // 8, 8, 3)).reshape(hb, wb, 3)
        y = np.round(y * (48 - 32 * a)) / (48 - 32 * a)
        img = ((1 - a) * pad + a * (y + chroma))[:h, :w]
    return img
