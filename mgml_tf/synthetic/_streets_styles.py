"""Styles (domains) of the "streets" family (private): how a rasterised `Scene` is turned into an RGB image.

A style fixes per-class palettes, per-part colours, textures, lighting, weather, blur and sensor noise.
Only the appearance changes between styles; the layout distribution and the meaning of every class are
the same, so a model trained on some styles must generalise to the others.
"""

import dataclasses
import functools

import numpy as np

from mgml_tf.synthetic import _streets_scene as S
from mgml_tf.synthetic.labels import CLASS_NAMES, NUM_CLASSES, ROAD, SKY

_K = 4  # palette entries per class (instances pick one by their random value)

# texture kinds
TEX_NONE, TEX_NOISE, TEX_BRICKS, TEX_TILES, TEX_SIDING, TEX_LEAVES = range(6)


@dataclasses.dataclass(frozen=True)
class Style:
    """Appearance of one domain.  Colours are RGB 0..255; factors are multipliers on [0, 1] colours."""

    name: str
    description: str
    palette: dict  # class name -> list of RGB colours (instances pick one)
    sky: tuple  # (colour at the top, colour at the horizon)
    glass: tuple = (40, 45, 55)  # vehicle windows and unlit building windows
    marks: tuple = (230, 230, 220)  # lane marks
    trousers: tuple = ((40, 40, 60), (30, 30, 30), (80, 70, 60), (20, 40, 90))
    skin: tuple = ((230, 190, 160), (180, 130, 100), (120, 80, 60))
    sign_inner: tuple = (240, 240, 240)
    textures: dict = dataclasses.field(default_factory=dict)  # class name -> (kind, amplitude, scale)
    noise_texture: float = 0.08  # default per-pixel texture noise amplitude (all classes)
    instance_jitter: float = 0.15  # per-instance brightness variation
    brightness: tuple = (0.95, 1.05)  # per-image global gain range
    gains: tuple = (1.0, 1.0, 1.0)  # colour temperature
    saturation: float = 1.0
    contrast: float = 1.0
    facing_light: tuple = (1.0, 0.85, 1.05, 0.95)  # ground, right-facing, left-facing, camera-facing
    shadow: float = 0.0  # strength of building shadows on the ground
    sun_left: bool = True  # which buildings cast the shadow
    contact_shadow: float = 0.4
    haze: float = 400.0  # aerial perspective distance (metres); fog below
    fog: tuple = None  # (visibility lo, hi) in metres, or None
    fog_color: tuple = (200, 200, 205)
    night: bool = False
    lit_windows: float = 0.0
    glow: float = 0.0
    wet: float = 0.0
    rain: float = 0.0  # rain streak density
    blur: int = 0  # [1, 2, 1] passes
    noise: float = 0.0  # sensor noise std (of [0, 1] colours)
    posterize: int = 0  # colour levels (toon)
    outline: float = 0.0  # darkening of label / depth edges (toon)
    vignette: float = 0.0

    def __post_init__(self):
        unknown = set(self.palette) - set(CLASS_NAMES)
        missing = set(CLASS_NAMES) - set(self.palette)
        if unknown or missing:
            raise ValueError(f"style {self.name}: palette classes unknown {sorted(unknown)}, missing {sorted(missing)}")

    def class_colors(self):
        """Mean palette colour per class [19, 3] in 0..255 (before lighting and weather)."""
        table = _tables_for(self)["table"][:, : NUM_CLASSES * _K]
        return table.T.reshape(NUM_CLASSES, _K, 3).mean(axis=1) * 255.0


def _c(*rgb):
    return tuple(rgb)


REALISTIC = {
    "road": [(72, 72, 76), (82, 80, 82), (62, 62, 66), (90, 88, 86)],
    "sidewalk": [(150, 146, 140), (132, 128, 125), (165, 160, 150), (122, 116, 110)],
    "building": [(150, 120, 100), (180, 170, 150), (120, 112, 106), (200, 190, 175), (110, 92, 82)],
    "wall": [(160, 150, 135), (132, 126, 120), (175, 165, 150)],
    "fence": [(112, 106, 96), (92, 92, 92), (130, 120, 100)],
    "pole": [(100, 100, 100), (82, 86, 92), (120, 120, 115)],
    "traffic light": [(40, 40, 36), (52, 56, 46), (30, 30, 30)],
    "traffic sign": [(200, 30, 30), (30, 80, 180), (230, 230, 230), (240, 200, 40)],
    "vegetation": [(70, 100, 40), (50, 85, 35), (90, 110, 50), (60, 90, 50)],
    "terrain": [(120, 130, 70), (140, 125, 90), (110, 120, 60)],
    "sky": [(120, 160, 210)],
    "person": [(60, 60, 80), (150, 40, 40), (40, 40, 40), (200, 200, 190), (60, 100, 150)],
    "rider": [(40, 40, 40), (180, 60, 20), (50, 70, 120)],
    "car": [(200, 200, 205), (30, 30, 35), (120, 20, 25), (60, 70, 90), (160, 160, 165)],
    "truck": [(220, 220, 215), (180, 60, 40), (60, 90, 60), (200, 170, 60)],
    "bus": [(210, 60, 50), (230, 200, 60), (60, 120, 180), (220, 220, 220)],
    "train": [(200, 200, 200), (200, 40, 40), (60, 80, 130)],
    "motorcycle": [(30, 30, 30), (160, 20, 20), (40, 60, 140)],
    "bicycle": [(40, 40, 40), (30, 60, 130), (150, 20, 20), (180, 180, 180)],
}
_REALISTIC_TEX = {
    "road": (TEX_NOISE, 0.22, 6.0),
    "sidewalk": (TEX_TILES, 0.25, 1.0),
    "building": (TEX_BRICKS, 0.2, 1.0),
    "wall": (TEX_BRICKS, 0.25, 1.0),
    "vegetation": (TEX_LEAVES, 0.6, 4.0),
    "terrain": (TEX_NOISE, 0.4, 5.0),
    "fence": (TEX_NOISE, 0.15, 4.0),
}

SUNNY_GAME = Style(
    name="sunny_game",
    description="saturated, clean, game-like; hard sunlight and shadows, flat textures",
    palette={
        "road": [(48, 48, 64), (52, 50, 70)],
        "sidewalk": [(225, 182, 160), (215, 170, 150)],
        "building": [(240, 200, 120), (120, 200, 230), (240, 150, 150), (200, 230, 150)],
        "wall": [(250, 240, 200), (240, 225, 180)],
        "fence": [(230, 120, 50), (240, 140, 60)],
        "pole": [(225, 225, 240)],
        "traffic light": [(240, 200, 0), (230, 190, 20)],
        "traffic sign": [(255, 20, 20), (20, 90, 255), (255, 230, 0)],
        "vegetation": [(40, 200, 40), (80, 220, 60), (30, 180, 70)],
        "terrain": [(160, 230, 80), (150, 220, 90)],
        "sky": [(90, 170, 255)],
        "person": [(255, 0, 120), (0, 200, 255), (255, 220, 0), (140, 0, 255)],
        "rider": [(255, 100, 0), (0, 255, 100), (255, 0, 60)],
        "car": [(255, 30, 30), (30, 90, 255), (255, 220, 0), (0, 220, 120)],
        "truck": [(255, 140, 0), (160, 60, 255)],
        "bus": [(255, 200, 0), (0, 180, 255)],
        "train": [(0, 200, 160), (255, 80, 200)],
        "motorcycle": [(255, 0, 255), (0, 255, 255)],
        "bicycle": [(255, 120, 0), (100, 255, 0)],
    },
    sky=((40, 120, 255), (160, 215, 255)),
    glass=(120, 200, 255),
    marks=(255, 255, 255),
    trousers=((20, 20, 120), (200, 0, 0), (0, 120, 0)),
    textures={"road": (TEX_NOISE, 0.03, 6.0), "building": (TEX_SIDING, 0.1, 1.0)},
    noise_texture=0.02,
    instance_jitter=0.05,
    brightness=(1.0, 1.1),
    saturation=1.35,
    contrast=1.1,
    facing_light=(1.0, 0.7, 1.1, 1.0),
    shadow=0.45,
    sun_left=True,
    contact_shadow=0.6,
    haze=2000.0,
)

OVERCAST_SIM = Style(
    name="overcast_sim",
    description="grey, desaturated simulator look; diffuse light, no shadows, mild texture and noise",
    palette={
        "road": [(108, 108, 112), (100, 100, 104)],
        "sidewalk": [(178, 178, 172), (170, 170, 166)],
        "building": [(130, 135, 142), (160, 160, 160), (112, 117, 126), (145, 140, 150)],
        "wall": [(150, 150, 145), (140, 142, 140)],
        "fence": [(100, 110, 122), (90, 100, 110)],
        "pole": [(70, 75, 82)],
        "traffic light": [(22, 22, 28)],
        "traffic sign": [(150, 60, 60), (80, 100, 150), (170, 170, 170)],
        "vegetation": [(86, 106, 82), (100, 116, 92), (78, 96, 80)],
        "terrain": [(142, 140, 112), (132, 132, 106)],
        "sky": [(215, 217, 220)],
        "person": [(90, 90, 100), (112, 100, 92), (70, 72, 80)],
        "rider": [(80, 85, 95), (120, 110, 100)],
        "car": [(172, 172, 178), (92, 96, 106), (122, 112, 132), (62, 62, 66)],
        "truck": [(182, 186, 192), (102, 112, 102)],
        "bus": [(142, 152, 172), (172, 162, 142)],
        "train": [(162, 166, 172), (130, 140, 150)],
        "motorcycle": [(82, 82, 92), (110, 100, 100)],
        "bicycle": [(100, 100, 112), (120, 110, 100)],
    },
    sky=((198, 203, 210), (228, 228, 230)),
    glass=(62, 70, 82),
    marks=(205, 205, 205),
    trousers=((60, 62, 70), (80, 80, 80)),
    sign_inner=(210, 210, 210),
    textures={
        "road": (TEX_NOISE, 0.12, 4.0),
        "sidewalk": (TEX_TILES, 0.12, 0.7),
        "building": (TEX_BRICKS, 0.1, 1.4),
        "vegetation": (TEX_LEAVES, 0.3, 3.0),
    },
    noise_texture=0.06,
    instance_jitter=0.1,
    brightness=(0.9, 1.0),
    saturation=0.6,
    contrast=0.9,
    facing_light=(1.0, 0.93, 0.97, 0.95),
    shadow=0.0,
    contact_shadow=0.35,
    haze=300.0,
    fog_color=(215, 217, 220),
    noise=0.015,
    blur=1,
)

DESERT_TOON = Style(
    name="desert_toon",
    description="warm desert palette, flat toon shading with posterised colours and ink outlines",
    palette={
        "road": [(150, 90, 62), (160, 98, 66)],
        "sidewalk": [(232, 202, 140), (225, 192, 130)],
        "building": [(240, 170, 90), (220, 120, 70), (250, 222, 160), (200, 140, 112)],
        "wall": [(202, 110, 72), (190, 100, 60)],
        "fence": [(140, 90, 50), (120, 80, 40)],
        "pole": [(92, 60, 40)],
        "traffic light": [(82, 50, 30)],
        "traffic sign": [(250, 250, 120), (60, 200, 200)],
        "vegetation": [(152, 162, 40), (122, 152, 50), (170, 150, 40)],
        "terrain": [(232, 192, 112), (220, 180, 100)],
        "sky": [(252, 190, 110)],
        "person": [(100, 40, 140), (40, 150, 150), (250, 250, 240)],
        "rider": [(20, 120, 120), (140, 20, 100)],
        "car": [(0, 150, 160), (130, 60, 170), (240, 240, 230), (60, 180, 90)],
        "truck": [(80, 110, 200), (200, 200, 60)],
        "bus": [(90, 180, 230), (170, 70, 190)],
        "train": [(40, 160, 120), (200, 200, 210)],
        "motorcycle": [(40, 40, 160), (20, 140, 60)],
        "bicycle": [(200, 40, 120), (20, 100, 200)],
    },
    sky=((250, 150, 70), (255, 225, 155)),
    glass=(40, 60, 92),
    marks=(255, 240, 110),
    trousers=((60, 30, 90), (20, 80, 80)),
    sign_inner=(255, 250, 200),
    textures={"terrain": (TEX_NOISE, 0.15, 2.0)},
    noise_texture=0.03,
    instance_jitter=0.08,
    brightness=(1.0, 1.08),
    gains=(1.05, 1.0, 0.9),
    saturation=1.2,
    contrast=1.05,
    facing_light=(1.0, 0.75, 1.05, 1.0),
    shadow=0.3,
    sun_left=False,
    contact_shadow=0.5,
    haze=800.0,
    posterize=6,
    outline=0.6,
)

FOGGY = Style(
    name="foggy",
    description="realistic colours and textures in dense fog that thickens with depth; soft and flat",
    palette=REALISTIC,
    sky=((200, 203, 206), (208, 210, 212)),
    textures=_REALISTIC_TEX,
    noise_texture=0.08,
    instance_jitter=0.15,
    brightness=(0.9, 1.05),
    gains=(0.98, 1.0, 1.03),
    saturation=0.75,
    contrast=0.95,
    facing_light=(1.0, 0.92, 0.98, 0.95),
    shadow=0.0,
    contact_shadow=0.3,
    fog=(18.0, 45.0),
    fog_color=(204, 206, 210),
    noise=0.012,
    blur=1,
)

NIGHT = Style(
    name="night",
    description="realistic colours at night: dark sky, low light, lit windows, lamps, head/tail lights, glow",
    palette=REALISTIC,
    sky=((4, 6, 18), (26, 28, 48)),
    textures=_REALISTIC_TEX,
    noise_texture=0.08,
    instance_jitter=0.15,
    brightness=(0.18, 0.3),
    gains=(0.85, 0.92, 1.15),
    saturation=0.8,
    contrast=1.0,
    facing_light=(1.0, 0.9, 0.9, 1.0),
    shadow=0.0,
    contact_shadow=0.5,
    haze=600.0,
    night=True,
    lit_windows=0.35,
    glow=1.0,
    noise=0.03,
    vignette=0.35,
)

RAINY_REALISTIC = Style(
    name="rainy_realistic",
    description="realistic colours under rain: grey sky, wet dark road with glare, rain streaks, blur, noise",
    palette=REALISTIC,
    sky=((118, 124, 134), (172, 176, 182)),
    textures=_REALISTIC_TEX,
    noise_texture=0.1,
    instance_jitter=0.15,
    brightness=(0.75, 0.9),
    gains=(0.93, 0.98, 1.08),
    saturation=0.7,
    contrast=0.95,
    facing_light=(1.0, 0.9, 0.95, 0.95),
    shadow=0.0,
    contact_shadow=0.45,
    haze=150.0,
    fog_color=(160, 165, 172),
    wet=1.0,
    rain=0.012,
    blur=1,
    noise=0.025,
    vignette=0.15,
)

SOURCE_STYLES = ("sunny_game", "overcast_sim", "desert_toon")
TARGET_STYLES = ("foggy", "night", "rainy_realistic")
STYLES = {s.name: s for s in (SUNNY_GAME, OVERCAST_SIM, DESERT_TOON, FOGGY, NIGHT, RAINY_REALISTIC)}


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------


@functools.cache
def _noise_tile():
    """A fixed 256x256 tileable value-noise texture in [0, 1] (two octaves)."""
    rng = np.random.default_rng(12345)
    out = np.zeros((256, 256), np.float32)
    for cells, weight in ((16, 0.6), (64, 0.4)):
        grid = rng.random((cells, cells)).astype(np.float32)
        rep = 256 // cells
        t = (np.arange(256, dtype=np.float32) % rep) / rep
        t = t * t * (3 - 2 * t)
        i0 = np.arange(256) // rep
        i1 = (i0 + 1) % cells
        rows = grid[i0] * (1 - t)[:, None] + grid[i1] * t[:, None]  # [256, cells]
        out += weight * (rows[:, i0] * (1 - t)[None, :] + rows[:, i1] * t[None, :])
    out -= out.min()
    out /= out.max()
    return out


def _sample(tile, u, v, scale):
    iu = (u * scale).astype(np.int32) & 255
    iv = (v * scale).astype(np.int32) & 255
    return tile[iv, iu]


def _blur121(img, passes):
    """[1, 2, 1] / 4 blur along the last two axes, `passes` times (edges kept)."""
    for _ in range(passes):
        out = img.copy()
        mid = out[..., 1:-1, :]
        mid *= 2.0
        mid += img[..., :-2, :]
        mid += img[..., 2:, :]
        mid *= 0.25
        img = out.copy()
        mid = img[..., 1:-1]
        mid *= 2.0
        mid += out[..., :-2]
        mid += out[..., 2:]
        mid *= 0.25
    return img


def _wide_blur(img, factor, passes):
    """Cheap wide blur of a planar [C, H, W] image: block mean down by `factor`, blur, nearest upsample."""
    c, h, w = img.shape
    hh, ww = -(-h // factor) * factor, -(-w // factor) * factor
    if (hh, ww) != (h, w):
        img = np.pad(img, ((0, 0), (0, hh - h), (0, ww - w)), mode="edge")
    small = img.reshape(c, hh // factor, factor, ww // factor, factor).mean(axis=(2, 4))
    small = _blur121(small, passes)
    big = np.repeat(np.repeat(small, factor, axis=1), factor, axis=2)
    return big[:, :h, :w]


_LAMP_COLORS = {
    S.LAMP_OFF: (0.12, 0.12, 0.12),
    S.LAMP_RED: (1.0, 0.15, 0.1),
    S.LAMP_AMBER: (1.0, 0.65, 0.0),
    S.LAMP_GREEN: (0.15, 1.0, 0.5),
    S.HEADLIGHT: (1.0, 0.98, 0.88),
    S.TAILLIGHT: (0.8, 0.08, 0.08),
    S.STREETLAMP: (1.0, 0.9, 0.7),
}


def _build_tables(style):
    """Colour table (planar [3, rows]) and per-part / per-class lookup tables for `stylize`."""
    rows = []
    for name in CLASS_NAMES:
        cols = np.asarray(style.palette[name], np.float32).reshape(-1, 3) / 255.0
        rows.extend(cols[np.arange(_K) % len(cols)])
    part_base = np.full(S.NUM_PARTS, -1, np.int32)
    part_n = np.ones(S.NUM_PARTS, np.int32)

    def add(p, colours):
        part_base[p] = len(rows)
        part_n[p] = len(colours)
        rows.extend(np.asarray(colours, np.float32).reshape(-1, 3) / 255.0)

    add(S.GLASS, [style.glass])
    add(S.WINDOW, [style.glass])
    add(S.TYRE, [(18, 18, 18)])
    add(S.MARK, [style.marks])
    add(S.SKIN, style.skin)
    add(S.CLOTH2, style.trousers)
    add(S.FACE2, [style.sign_inner])
    for p, col in _LAMP_COLORS.items():
        add(p, [np.asarray(col) * 255.0])
    part_mul = np.ones(S.NUM_PARTS, np.float32)
    part_mul[S.DARK] = 0.4
    part_jit = np.zeros(S.NUM_PARTS, np.float32)
    part_jit[[S.BODY, S.DARK, S.FACE, S.CLOTH2, S.SKIN]] = style.instance_jitter
    part_jit[S.GLASS], part_jit[S.WINDOW] = 0.1, 0.2
    emissive = np.zeros((3, S.NUM_PARTS), np.float32)
    for p in S.EMISSIVE_PARTS:
        emissive[:, p] = _LAMP_COLORS[p]
    kind = np.zeros(NUM_CLASSES, np.int32)
    amp = np.full(NUM_CLASSES, style.noise_texture, np.float32)
    amp[SKY] = 0.0
    scale = np.ones(NUM_CLASSES, np.float32)
    for name, (k, a, sc) in style.textures.items():
        c = CLASS_NAMES.index(name)
        kind[c], amp[c], scale[c] = k, a, sc
    # colour grading as one affine map: gains, then saturation, then contrast
    m = np.diag(np.asarray(style.gains, np.float32))
    sat = style.saturation
    m = (sat * np.eye(3) + (1 - sat) / 3.0 * np.ones((3, 3))) @ m
    m = style.contrast * m
    offset = np.full((3, 1), 0.5 * (1 - style.contrast), np.float32)
    return dict(
        table=np.ascontiguousarray(np.asarray(rows, np.float32).T),
        part_base=part_base,
        part_n=part_n,
        part_mul=part_mul,
        part_jit=part_jit,
        emissive=emissive,
        tex_kind=kind,
        tex_amp=amp,
        tex_scale=(8.0 * scale).astype(np.float32),
        grade=m.astype(np.float32),
        grade_offset=offset,
        identity_grade=(style.gains == (1.0, 1.0, 1.0) and sat == 1.0 and style.contrast == 1.0),
    )


_TABLES = {}


def _tables_for(style):
    key = id(style)
    if key not in _TABLES or _TABLES[key][0] is not style:
        _TABLES[key] = (style, _build_tables(style))
    return _TABLES[key][1]


def stylize(scene, style, rng):
    """Render `scene` in `style`.  Returns uint8 [H, W, 3].  Works on a planar [3, H, W] float image."""
    t = _tables_for(style)
    lab = scene.label
    part = scene.part
    var = scene.var
    h, w = lab.shape
    tile = _noise_tile()
    present_cls = np.bincount(lab.ravel(), minlength=NUM_CLASSES)

    # 1. base colours: class palette entry per instance, or the part's own colour(s)
    vk = (var * 1024.0).astype(np.int32)
    idx = lab.astype(np.int32) * _K + (vk >> 8)
    pb = t["part_base"][part]
    special = pb >= 0
    idx = np.where(special, pb + vk % t["part_n"][part], idx)
    img = np.take(t["table"], idx, axis=1)  # [3, H, W]

    # 2. one scalar factor per pixel: part/instance variation x texture x lighting x brightness
    frac = var * 7.31
    frac -= np.floor(frac)
    fac = t["part_mul"][part] * (1.0 + t["part_jit"][part] * (2.0 * frac - 1.0))

    kind = t["tex_kind"][lab]
    amp = t["tex_amp"][lab]
    u, v = scene.u, scene.v
    n = _sample(tile, u, v, t["tex_scale"][lab])
    tex = 1.0 + amp * (n - 0.5)
    kinds_present = set(np.unique(t["tex_kind"][present_cls > 0]).tolist())
    if kinds_present & {TEX_BRICKS, TEX_TILES, TEX_SIDING}:
        ui = (u * 53.333).astype(np.int32)  # 1/32 of 0.6 m
        vi = (v * 53.333).astype(np.int32)
        body = part == S.BODY
        if TEX_BRICKS in kinds_present:
            mortar = ((vi & 15) < 2) | (((ui + ((vi >> 4) & 1) * 16) & 31) < 2)
            tex = np.where((kind == TEX_BRICKS) & mortar & body, tex * (1.0 - 1.5 * amp), tex)
        if TEX_TILES in kinds_present:
            grout = ((ui & 31) < 2) | ((vi & 31) < 2)
            tex = np.where((kind == TEX_TILES) & grout, tex * (1.0 - amp), tex)
        if TEX_SIDING in kinds_present:
            tex = np.where((kind == TEX_SIDING) & ((vi & 31) < 4) & body, tex * (1.0 - amp), tex)
    if TEX_LEAVES in kinds_present:
        n2 = _sample(tile, u * 3.1 + 17.0, v * 3.1 + 5.0, t["tex_scale"][lab])
        tex = np.where(kind == TEX_LEAVES, 1.0 + amp * (n * n2 - 0.3), tex)
    fac *= tex

    shade = np.asarray(style.facing_light, np.float32)[scene.facing]
    if style.shadow > 0:
        bit = S.SHADOW_LEFT if style.sun_left else S.SHADOW_RIGHT
        shade = np.where((scene.shadow & bit) > 0, shade * (1.0 - style.shadow), shade)
    if style.contact_shadow > 0:
        shade = np.where((scene.shadow & S.SHADOW_CONTACT) > 0, shade * (1.0 - style.contact_shadow), shade)
    if style.wet > 0:
        glare = np.clip(_sample(tile, u * 0.5, v * 0.15, 8.0) - 0.55, 0.0, 1.0) * 1.2
        shade = np.where(lab == ROAD, shade * (0.6 + style.wet * glare), shade)
    gain = np.float32(rng.uniform(*style.brightness))
    fac *= shade
    fac *= gain
    img *= fac

    # 3. sky: vertical gradient with faint clouds, in image coordinates
    sky = lab == SKY
    if present_cls[SKY]:
        r = int(np.nonzero(sky.any(axis=1))[0].max()) + 1
        top, bot = (np.asarray(c, np.float32) / 255 for c in style.sky)
        tt = np.clip((np.arange(r, dtype=np.float32) + 0.5) / max(scene.horizon, 1.0), 0, 1)
        grad = (top[:, None] * (1 - tt) + bot[:, None] * tt)[:, :, None]  # [3, r, 1]
        cloud = tile[((np.arange(r) * 2) & 255)[:, None], ((np.arange(w) + 37) & 255)[None, :]]
        ca = 0.0 if style.night else 0.25
        sky_img = grad * (1 - ca * np.clip(cloud - 0.45, 0, 1)) + ca * np.clip(cloud - 0.55, 0, 1)
        img[:, :r] = np.where(sky[:r], sky_img * gain, img[:, :r])

    # 4. night: emissive parts and lit windows, glow
    if style.night:
        light = np.take(t["emissive"], part, axis=1)
        lit = (part == S.WINDOW) & (var < style.lit_windows)
        light[:, lit] = np.asarray((1.0, 0.8, 0.45), np.float32)[:, None]
        on = light.max(axis=0) > 0
        img = np.where(on, light, img)
        if style.glow > 0 and on.any():
            img += (style.glow * 0.9) * _wide_blur(light, 8, 2)
            img += (style.glow * 1.2) * _wide_blur(light, 2, 1)

    # 5. aerial haze or fog (the sky has infinite depth and takes the fog colour in fog)
    fog_col = (np.asarray(style.fog_color, np.float32) / 255)[:, None, None]
    depth = scene.depth
    if style.fog is not None or not style.night:
        dist = style.haze if style.fog is None else rng.uniform(*style.fog)
        tr = np.exp(np.minimum(depth, 1e4) * np.float32(-1.0 / dist))
        tr[sky] = 1.0 if style.fog is None else 0.0
        img -= fog_col
        img *= tr
        img += fog_col

    # 6. colour grading (gains, saturation, contrast as one affine map)
    if not t["identity_grade"]:
        img = (t["grade"] @ img.reshape(3, -1) + t["grade_offset"]).reshape(3, h, w)

    # 7. rain streaks (slanted, short, bright)
    if style.rain > 0:
        n_drops = int(style.rain * h * w)
        length = max(3, h // 25)
        y0 = rng.integers(-length, h, n_drops)
        x0 = rng.integers(-length // 3, w, n_drops)
        k = np.arange(length)
        yy = (y0[:, None] + k[None, :]).ravel()
        xx = (x0[:, None] + k[None, :] // 3).ravel()
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        streak = np.zeros((h, w), bool)
        streak[yy[ok], xx[ok]] = True
        img[:, streak] += 0.18

    # 8. toon look: posterise and ink outlines on label or depth edges
    if style.posterize:
        img = np.floor(np.clip(img, 0, 1) * style.posterize + 0.5) * (1.0 / style.posterize)
    if style.outline > 0:
        d = np.minimum(depth, 1e4)
        edge = np.zeros((h, w), bool)
        edge[1:] = (lab[1:] != lab[:-1]) | (np.abs(d[1:] - d[:-1]) > 0.15 * np.minimum(d[1:], d[:-1]))
        edge[:, 1:] |= (lab[:, 1:] != lab[:, :-1]) | (
            np.abs(d[:, 1:] - d[:, :-1]) > 0.15 * np.minimum(d[:, 1:], d[:, :-1])
        )
        img[:, edge] *= np.float32(1.0 - style.outline)

    # 9. optics and sensor
    if style.blur:
        img = _blur121(img, style.blur)
    if style.vignette > 0:
        yy = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
        xx = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
        img *= 1.0 - np.float32(2.0 * style.vignette) * (yy[:, None] ** 2 + xx[None, :] ** 2)
    if style.noise > 0:
        img += rng.standard_normal((3, h, w), dtype=np.float32) * np.float32(style.noise)
    np.clip(img, 0.0, 1.0, out=img)
    img *= 255.0
    img += 0.5
    return np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 0))
