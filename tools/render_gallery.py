"""Render a gallery of the synthetic styles: the same scene layouts under every style, plus the labels.

    python -m tools.render_gallery [--family=streets] [--output=docs/gallery.png] [--rows=3] [--seed=0]
    python -m tools.render_gallery --family=towns --output=docs/gallery_towns.png

Columns, left to right: the three source styles, the three target styles (streets: sunny_game, overcast_sim,
desert_toon, foggy, night, rainy_realistic; towns: clay_lowpoly, snow_sim, neon_comic, dusk_dashcam,
hazy_sepia, teal_drizzle), then the label map in Cityscapes colours.  One row per scene layout.
Scenes are rendered at twice the tile size and box-downsampled (tiles are 128x256 by default); colours are
stored with 5 bits per channel to keep the PNG small.
"""

import os

import numpy as np
from absl import app, flags

from mgml_tf.synthetic import streets as synthetic
from mgml_tf.synthetic import towns as synthetic_towns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _down2(img):
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    x = img[:h, :w].astype(np.float32)
    return ((x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4 + 0.5).astype(np.uint8)


def render_gallery(rows=3, tile_height=128, seed=0, gap=2, family="streets"):
    """uint8 gallery image [rows * (th + gap) - gap, 7 * (tw + gap) - gap, 3]."""
    th, tw = tile_height, 2 * tile_height
    module = synthetic_towns if family == "towns" else synthetic
    styles = list(module.SOURCE_STYLES) + list(module.TARGET_STYLES)
    cols = len(styles) + 1
    out = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 255, np.uint8)
    for r in range(rows):
        if family == "towns":  # one layout, shaded in every style
            scene = synthetic_towns.render_town(np.random.default_rng([seed, r]), 2 * th, 2 * tw)
            tiles = [
                _down2(synthetic_towns.shade(scene, synthetic_towns.STYLES[s], np.random.default_rng([seed, r, k])))
                for k, s in enumerate(styles)
            ]
        else:
            scene = synthetic.render_scene(np.random.default_rng([seed, r]), 2 * th, 2 * tw)
            tiles = [
                _down2(synthetic.stylize(scene, synthetic.STYLES[s], np.random.default_rng([seed, r, k])))
                for k, s in enumerate(styles)
            ]
        tiles.append(synthetic.colorize(scene.label)[::2, ::2])
        for c, tile in enumerate(tiles):
            y, x = r * (th + gap), c * (tw + gap)
            out[y : y + th, x : x + tw] = tile
    return out


def write_gallery(output, family="streets", rows=3, tile_height=128, seed=0, bits=5):
    """Renders the gallery and writes it to ``output`` as a PNG keeping ``bits`` bits per colour channel."""
    import tensorflow as tf

    img = render_gallery(rows, tile_height, seed, family=family)
    mask = np.uint8((0xFF << (8 - bits)) & 0xFF)
    data = tf.io.encode_png(img & mask, compression=9).numpy()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "wb") as f:
        f.write(data)
    module = synthetic_towns if family == "towns" else synthetic
    print(
        f"wrote {output}: {img.shape[1]}x{img.shape[0]}, {len(data) / 1024:.0f} KB; columns: "
        + ", ".join(list(module.SOURCE_STYLES) + list(module.TARGET_STYLES) + ["labels"])
    )


# ---------------------------------------------------------------------------------------- command line
def _define_flags():
    flags.DEFINE_enum(
        "family",
        "streets",
        ["streets", "towns"],
        "Synthetic family: streets (mgml_tf.synthetic.streets) or towns (mgml_tf.synthetic.towns).",
    )
    flags.DEFINE_string("output", os.path.join(REPO, "docs", "gallery.png"), "Output PNG.")
    flags.DEFINE_integer("rows", 3, "Number of scene layouts (rows).")
    flags.DEFINE_integer("tile_height", 128, "Tile height (width is twice this).")
    flags.DEFINE_integer("seed", 0, "Seed of the layouts.")
    flags.DEFINE_integer("bits", 5, "Bits per colour channel kept in the PNG (5 keeps docs/gallery.png < 500 KB).")


def _main(argv):
    del argv
    FLAGS = flags.FLAGS
    write_gallery(FLAGS.output, FLAGS.family, FLAGS.rows, FLAGS.tile_height, FLAGS.seed, FLAGS.bits)


def main(argv=None):
    _define_flags()
    app.run(_main, argv)


if __name__ == "__main__":
    main()
