"""Styles (domains) for the synthetic generator: how a rasterised `Scene` is turned into an RGB image.

A style fixes per-class palettes, per-part colours, textures, lighting, weather, blur and sensor noise.
Only the appearance changes between styles; the layout distribution and the meaning of every class are
the same, so a model trained on some styles must generalise to the others.
"""
import dataclasses
import functools

import numpy as np

from mgml_tf.data import _synthetic_scene as S
from mgml_tf.data._synthetic_labels import CLASS_NAMES, NUM_CLASSES, ROAD, SKY

_K = 4  # palette entries per class (instances pick one by their random value)

# texture kinds
TEX_NONE, TEX_NOISE, TEX_BRICKS, TEX_TILES, TEX_SIDING, TEX_LEAVES = range(6)


@dataclasses.dataclass(frozen=True)
class Style:
    """Appearance of one domain.  Colours are RGB 0..255; factors are multipliers on [0, 1] colours."""
    name: str
    description: str
    palette: dict                       # class name -> list of RGB colours (instances pick one)
    sky: tuple                          # (colour at the top, colour at the horizon)
    glass: tuple = (40, 45, 55)         # vehicle windows and unlit building windows
    marks: tuple = (230, 230, 220)      # lane marks
    trousers: tuple = ((40, 40, 60), (30, 30, 30), (80, 70, 60), (20, 40, 90))
    skin: tuple = ((230, 190, 160), (180, 130, 100), (120, 80, 60))
    sign_inner: tuple = (240, 240, 240)
    textures: dict = dataclasses.field(default_factory=dict)  # class name -> (kind, amplitude, scale)
    noise_texture: float = 0.08         # default per-pixel texture noise amplitude (all classes)
    instance_jitter: float = 0.15       # per-instance brightness variation
    brightness: tuple = (0.95, 1.05)    # per-image global gain range
    gains: tuple = (1.0, 1.0, 1.0)      # colour temperature
    saturation: float = 1.0
    contrast: float = 1.0
    facing_light: tuple = (1.0, 0.85, 1.05, 0.95)  # ground, right-facing, left-facing, camera-facing
    shadow: float = 0.0                 # strength of building shadows on the ground
    sun_left: bool = True               # which buildings cast the shadow
    contact_shadow: float = 0.4
    haze: float = 400.0                 # aerial perspective distance (metres); fog below
    fog: tuple = None                   # (visibility lo, hi) in metres, or None
    fog_color: tuple = (200, 200, 205)
    night: bool = False
    lit_windows: float = 0.0
    glow: float = 0.0
    wet: float = 0.0
    rain: float = 0.0                   # rain streak density
    blur: int = 0                       # [1, 2, 1] passes
    noise: float = 0.0                  # sensor noise std (of [0, 1] colours)
    posterize: int = 0                  # colour levels (toon)
    outline: float = 0.0                # darkening of label / depth edges (toon)
    vignette: float = 0.0

    def __post_init__(self):
        unknown = set(self.palette) - set(CLASS_NAMES)
        missing = set(CLASS_NAMES) - set(self.palette)
        if unknown or missing:
            raise ValueError(f"style {self.name}: palette classes unknown {sorted(unknown)}, "
                             f"missing {sorted(missing)}")

    @functools.cached_property
    def _tables(self):
        lut = np.zeros((NUM_CLASSES, _K, 3), np.float32)
        for c, name in enumerate(CLASS_NAMES):
            cols = np.asarray(self.palette[name], np.float32).reshape(-1, 3) / 255.0
            lut[c] = cols[np.arange(_K) % len(cols)]
        kind = np.zeros(NUM_CLASSES, np.int32)
        amp = np.full(NUM_CLASSES, self.noise_texture, np.float32)
        scale = np.ones(NUM_CLASSES, np.float32)
        for name, (k, a, s) in self.textures.items():
            c = CLASS_NAMES.index(name)
            kind[c], amp[c], scale[c] = k, a, s
        return lut.reshape(-1, 3), kind, amp, scale

    def class_colors(self):
        """Mean palette colour per class [19, 3] in 0..255 (before lighting and weather)."""
        lut = self._tables[0].reshape(NUM_CLASSES, _K, 3)
        return lut.mean(axis=1) * 255.0


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
    "road": (TEX_NOISE, 0.22, 6.0), "sidewalk": (TEX_TILES, 0.25, 1.0), "building": (TEX_BRICKS, 0.2, 1.0),
    "wall": (TEX_BRICKS, 0.25, 1.0), "vegetation": (TEX_LEAVES, 0.6, 4.0), "terrain": (TEX_NOISE, 0.4, 5.0),
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
    glass=(120, 200, 255), marks=(255, 255, 255),
    trousers=((20, 20, 120), (200, 0, 0), (0, 120, 0)),
    textures={"road": (TEX_NOISE, 0.03, 6.0), "building": (TEX_SIDING, 0.1, 1.0)},
    noise_texture=0.02, instance_jitter=0.05, brightness=(1.0, 1.1), saturation=1.35, contrast=1.1,
    facing_light=(1.0, 0.7, 1.1, 1.0), shadow=0.45, sun_left=True, contact_shadow=0.6, haze=2000.0,
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
    glass=(62, 70, 82), marks=(205, 205, 205),
    trousers=((60, 62, 70), (80, 80, 80)), sign_inner=(210, 210, 210),
    textures={"road": (TEX_NOISE, 0.12, 4.0), "sidewalk": (TEX_TILES, 0.12, 0.7),
              "building": (TEX_BRICKS, 0.1, 1.4), "vegetation": (TEX_LEAVES, 0.3, 3.0)},
    noise_texture=0.06, instance_jitter=0.1, brightness=(0.9, 1.0), saturation=0.6, contrast=0.9,
    facing_light=(1.0, 0.93, 0.97, 0.95), shadow=0.0, contact_shadow=0.35, haze=300.0,
    fog_color=(215, 217, 220), noise=0.015, blur=1,
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
    glass=(40, 60, 92), marks=(255, 240, 110),
    trousers=((60, 30, 90), (20, 80, 80)), sign_inner=(255, 250, 200),
    textures={"terrain": (TEX_NOISE, 0.15, 2.0)},
    noise_texture=0.03, instance_jitter=0.08, brightness=(1.0, 1.08), gains=(1.05, 1.0, 0.9),
    saturation=1.2, contrast=1.05, facing_light=(1.0, 0.75, 1.05, 1.0), shadow=0.3, sun_left=False,
    contact_shadow=0.5, haze=800.0, posterize=6, outline=0.6,
)

FOGGY = Style(
    name="foggy",
    description="realistic colours and textures in dense fog that thickens with depth; soft and flat",
    palette=REALISTIC, sky=((200, 203, 206), (208, 210, 212)), textures=_REALISTIC_TEX,
    noise_texture=0.08, instance_jitter=0.15, brightness=(0.9, 1.05), gains=(0.98, 1.0, 1.03),
    saturation=0.75, contrast=0.95, facing_light=(1.0, 0.92, 0.98, 0.95), shadow=0.0, contact_shadow=0.3,
    fog=(18.0, 45.0), fog_color=(204, 206, 210), noise=0.012, blur=1,
)

NIGHT = Style(
    name="night",
    description="realistic colours at night: dark sky, low light, lit windows, lamps, head/tail lights, glow",
    palette=REALISTIC, sky=((4, 6, 18), (26, 28, 48)), textures=_REALISTIC_TEX,
    noise_texture=0.08, instance_jitter=0.15, brightness=(0.18, 0.3), gains=(0.85, 0.92, 1.15),
    saturation=0.8, contrast=1.0, facing_light=(1.0, 0.9, 0.9, 1.0), shadow=0.0, contact_shadow=0.5,
    haze=600.0, night=True, lit_windows=0.35, glow=1.0, noise=0.03, vignette=0.35,
)

RAINY_REALISTIC = Style(
    name="rainy_realistic",
    description="realistic colours under rain: grey sky, wet dark road with glare, rain streaks, blur, noise",
    palette=REALISTIC, sky=((118, 124, 134), (172, 176, 182)), textures=_REALISTIC_TEX,
    noise_texture=0.1, instance_jitter=0.15, brightness=(0.75, 0.9), gains=(0.93, 0.98, 1.08),
    saturation=0.7, contrast=0.95, facing_light=(1.0, 0.9, 0.95, 0.95), shadow=0.0, contact_shadow=0.45,
    haze=150.0, fog_color=(160, 165, 172), wet=1.0, rain=0.012, blur=1, noise=0.025, vignette=0.15,
)

SOURCE_STYLES = ("sunny_game", "overcast_sim", "desert_toon")
TARGET_STYLES = ("foggy", "night", "rainy_realistic")
STYLES = {s.name: s for s in (SUNNY_GAME, OVERCAST_SIM, DESERT_TOON, FOGGY, NIGHT, RAINY_REALISTIC)}


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
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
        rows = grid[i0] * (1 - t)[:, None] + grid[i1] * t[:, None]          # [256, cells]
        out += weight * (rows[:, i0] * (1 - t)[None, :] + rows[:, i1] * t[None, :])
    out -= out.min()
    out /= out.max()
    return out


def _sample(tile, u, v, scale):
    iu = (u * scale).astype(np.int32) & 255
    iv = (v * scale).astype(np.int32) & 255
    return tile[iv, iu]


def _blur121(img, passes, axis_pairs=((0, 1),)):
    for _ in range(passes):
        p = np.pad(img, ((1, 1), (1, 1)) + ((0, 0),) * (img.ndim - 2), mode="edge")
        img = (p[:-2, 1:-1] + 2 * p[1:-1, 1:-1] + p[2:, 1:-1]) * 0.25
        p = np.pad(img, ((0, 0), (1, 1)) + ((0, 0),) * (img.ndim - 2), mode="edge")
        img = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) * 0.25
    return img


def _wide_blur(img, factor=8, passes=2):
    """Cheap wide blur: block-average down by `factor`, [1,2,1] passes, nearest upsample."""
    h, w = img.shape[:2]
    hh, ww = -(-h // factor) * factor, -(-w // factor) * factor
    p = np.pad(img, ((0, hh - h), (0, ww - w), (0, 0)), mode="edge")
    small = p.reshape(hh // factor, factor, ww // factor, factor, -1).mean(axis=(1, 3))
    small = _blur121(small, passes)
    big = np.repeat(np.repeat(small, factor, axis=0), factor, axis=1)
    return big[:h, :w]


def stylize(scene, style, rng):
    """Render `scene` in `style`.  Returns uint8 [H, W, 3]."""
    lut, tex_kind, tex_amp, tex_scale = style._tables
    lab = scene.label
    h, w = lab.shape
    part = scene.part
    var = scene.var
    tile = _noise_tile()

    # 1. base colour: palette entry per instance, per-instance brightness jitter
    k = np.minimum((var * _K).astype(np.int32), _K - 1)
    img = lut[lab.astype(np.int32) * _K + k]
    jit = 1.0 + style.instance_jitter * (np.mod(var * 7.31, 1.0) - 0.5) * 2
    img *= jit[..., None]

    # 2. parts
    present = np.bincount(part.ravel(), minlength=S.NUM_PARTS)
    glass = np.asarray(style.glass, np.float32) / 255

    if present[S.GLASS]:
        m = part == S.GLASS
        img[m] = glass * (0.9 + 0.2 * var[m])[:, None]
    if present[S.WINDOW]:
        m = part == S.WINDOW
        img[m] = glass * (0.8 + 0.4 * var[m])[:, None]
    if present[S.TYRE]:
        img[part == S.TYRE] = (0.07, 0.07, 0.07)
    if present[S.DARK]:
        m = part == S.DARK
        img[m] *= 0.4
    if present[S.MARK]:
        img[part == S.MARK] = np.asarray(style.marks, np.float32) / 255
    if present[S.SKIN]:
        m = part == S.SKIN
        skin = np.asarray(style.skin, np.float32) / 255
        img[m] = skin[(var[m] * 13.7).astype(np.int32) % len(skin)]
    if present[S.CLOTH2]:
        m = part == S.CLOTH2
        tr = np.asarray(style.trousers, np.float32) / 255
        img[m] = tr[(var[m] * 17.3).astype(np.int32) % len(tr)]
    if present[S.FACE2]:
        img[part == S.FACE2] = np.asarray(style.sign_inner, np.float32) / 255
    lamp_colors = {S.LAMP_OFF: (0.12, 0.12, 0.12), S.LAMP_RED: (1.0, 0.15, 0.1), S.LAMP_AMBER: (1.0, 0.65, 0.0),
                   S.LAMP_GREEN: (0.15, 1.0, 0.5), S.HEADLIGHT: (1.0, 0.98, 0.88),
                   S.TAILLIGHT: (0.8, 0.08, 0.08), S.STREETLAMP: (1.0, 0.9, 0.7)}
    for p, col in lamp_colors.items():
        if present[p]:
            img[part == p] = col

    # 3. textures (in metres on each surface)
    kind = tex_kind[lab]
    amp = tex_amp[lab]
    scale = tex_scale[lab]
    u, v = scene.u, scene.v
    n = _sample(tile, u, v, 8.0 * scale)
    tex = 1.0 + amp * (n - 0.5)
    if (kind == TEX_BRICKS).any():
        row = np.floor(v / 0.3)
        mortar = (np.mod(v, 0.3) < 0.04) | (np.mod(u + 0.3 * np.mod(row, 2), 0.6) < 0.04)
        tex = np.where((kind == TEX_BRICKS) & mortar & (part == S.BODY), tex * (1 - 1.5 * amp), tex)
    if (kind == TEX_TILES).any():
        grout = (np.mod(u, 0.8 * scale) < 0.05) | (np.mod(v, 0.8 * scale) < 0.05)
        tex = np.where((kind == TEX_TILES) & grout, tex * (1 - amp), tex)
    if (kind == TEX_SIDING).any():
        tex = np.where((kind == TEX_SIDING) & (np.mod(v, 0.5) < 0.08) & (part == S.BODY), tex * (1 - amp), tex)
    if (kind == TEX_LEAVES).any():
        n2 = _sample(tile, u * 3.1 + 17, v * 3.1 + 5, 8.0 * scale)
        tex = np.where(kind == TEX_LEAVES, 1.0 + amp * (n * n2 - 0.3), tex)
    img *= tex[..., None]

    # sky: vertical gradient with faint clouds, in image coordinates
    sky = lab == SKY
    if sky.any():
        top, bot = (np.asarray(c, np.float32) / 255 for c in style.sky)
        t = np.clip((np.arange(h, dtype=np.float32) + 0.5) / max(scene.horizon, 1.0), 0, 1)[:, None, None]
        grad = top * (1 - t) + bot * t  # [h, 1, 3]
        yy, xx = np.nonzero(sky)
        cloud = tile[(yy * 2) & 255, (xx + 37) & 255]
        cloud_amt = 0.0 if style.night else 0.25
        sky_col = grad[yy, 0] * (1 - cloud_amt * np.clip(cloud - 0.45, 0, 1)[:, None])
        sky_col += cloud_amt * np.clip(cloud - 0.55, 0, 1)[:, None]
        img[yy, xx] = sky_col

    # 4. lighting: surface orientation, building shadows, contact shadows
    shade = np.asarray(style.facing_light, np.float32)[scene.facing]
    if style.shadow > 0:
        bit = S.SHADOW_LEFT if style.sun_left else S.SHADOW_RIGHT
        shade = np.where((scene.shadow & bit) > 0, shade * (1 - style.shadow), shade)
    if style.contact_shadow > 0:
        shade = np.where((scene.shadow & S.SHADOW_CONTACT) > 0, shade * (1 - style.contact_shadow), shade)
    if style.wet > 0:
        road = lab == ROAD
        glare = np.clip(_sample(tile, u * 0.5, v * 0.15, 8.0) - 0.55, 0, 1) * 1.2
        shade = np.where(road, shade * (0.6 + style.wet * glare), shade)
    gain = rng.uniform(*style.brightness)
    img *= (shade * gain)[..., None]
    img *= np.asarray(style.gains, np.float32)

    # 5. night: emissive parts and lit windows, glow
    if style.night:
        emis = np.isin(part, S.EMISSIVE_PARTS)
        lit = (part == S.WINDOW) & (var < style.lit_windows)
        light = np.zeros_like(img)
        for p, col in lamp_colors.items():
            if p != S.LAMP_OFF and present[p]:
                m = part == p
                light[m] = col
        light[lit] = (1.0, 0.8, 0.45)
        img = np.where((emis | lit)[..., None], light, img)
        if style.glow > 0 and (emis | lit).any():
            img += style.glow * 0.9 * _wide_blur(light, 8, 2) + style.glow * 1.5 * _wide_blur(light, 2, 2)

    # 6. aerial haze and fog (sky has infinite depth and takes the fog colour)
    fog_col = np.asarray(style.fog_color, np.float32) / 255
    depth = scene.depth
    if style.fog is not None:
        vis = rng.uniform(*style.fog)
        tr = np.exp(-np.minimum(depth, 1e4) / vis)
        tr = np.where(sky, 0.0, tr)
        img = img * tr[..., None] + fog_col * (1 - tr)[..., None]
    elif not style.night:
        tr = np.exp(-np.minimum(depth, 1e4) / style.haze)
        tr = np.where(sky, 1.0, tr)
        img = img * tr[..., None] + fog_col * (1 - tr)[..., None]

    # 7. colour grading
    if style.saturation != 1.0:
        grey = img.mean(axis=2, keepdims=True)
        img = grey + style.saturation * (img - grey)
    if style.contrast != 1.0:
        img = 0.5 + style.contrast * (img - 0.5)

    # 8. rain streaks (slanted, short, bright)
    if style.rain > 0:
        drops = (rng.random((h, w), dtype=np.float32) < style.rain).astype(np.float32)
        streak = np.zeros_like(drops)
        length = max(3, h // 25)
        for i in range(length):
            streak += np.roll(drops, (i, i // 3), axis=(0, 1))
        img = img + 0.18 * np.minimum(streak, 1.0)[..., None]

    # 9. toon look: posterise and ink outlines on label or depth edges
    if style.posterize:
        img = np.floor(np.clip(img, 0, 1) * style.posterize + 0.5) / style.posterize
    if style.outline > 0:
        dl = np.zeros((h, w), bool)
        d = np.minimum(depth, 1e4)
        e_v = (lab[1:] != lab[:-1]) | (np.abs(d[1:] - d[:-1]) > 0.15 * np.minimum(d[1:], d[:-1]))
        e_h = (lab[:, 1:] != lab[:, :-1]) | (np.abs(d[:, 1:] - d[:, :-1]) > 0.15 * np.minimum(d[:, 1:],
                                                                                                d[:, :-1]))
        dl[1:] |= e_v
        dl[:, 1:] |= e_h
        img = np.where(dl[..., None], img * (1 - style.outline), img)

    # 10. optics and sensor
    if style.blur:
        img = _blur121(img, style.blur)
    if style.vignette > 0:
        yy = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
        xx = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
        img *= (1 - style.vignette * 2 * (yy[:, None] ** 2 + xx[None, :] ** 2))[..., None]
    if style.noise > 0:
        img += style.noise * rng.standard_normal((h, w, 1), dtype=np.float32)
        img += 0.5 * style.noise * rng.standard_normal((h, w, 3), dtype=np.float32)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
