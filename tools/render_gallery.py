"""Render a gallery of the synthetic styles: the same scene layouts under every style, plus the labels.

    python tools/render_gallery.py [--family=streets] [--output=docs/gallery.png] [--rows=3] [--seed=0]
    python tools/render_gallery.py --family=towns --output=docs/gallery_towns.png

Columns, left to right: the three source styles, the three target styles (streets: sunny_game, overcast_sim,
desert_toon, foggy, night, rainy_realistic; towns: clay_lowpoly, snow_sim, neon_comic, dusk_dashcam,
hazy_sepia, teal_drizzle), then the label map in Cityscapes colours.  One row per scene layout.
Scenes are rendered at twice the tile size and box-downsampled (tiles are 128x256 by default); colours are
stored with 5 bits per channel to keep the PNG small.
"""

import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mgml_tf.synthetic import streets as synthetic
from mgml_tf.synthetic import towns as synthetic_towns

flags.DEFINE_enum(
    "family",
    "streets",
    ["streets", "towns"],
    "Synthetic family: streets (mgml_tf.data.synthetic) or towns (mgml_tf.data.synthetic_towns).",
)
flags.DEFINE_string(
    "output",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "gallery.png"),
    "Output PNG.",
)
flags.DEFINE_integer("rows", 3, "Number of scene layouts (rows).")
flags.DEFINE_integer("tile_height", 128, "Tile height (width is twice this).")
flags.DEFINE_integer("seed", 0, "Seed of the layouts.")
flags.DEFINE_integer("bits", 5, "Bits per colour channel kept in the PNG (5 keeps docs/gallery.png < 500 KB).")
FLAGS = flags.FLAGS


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


def main(argv):
    del argv
    import tensorflow as tf

    img = render_gallery(FLAGS.rows, FLAGS.tile_height, FLAGS.seed, family=FLAGS.family)
    mask = np.uint8((0xFF << (8 - FLAGS.bits)) & 0xFF)
    data = tf.io.encode_png(img & mask, compression=9).numpy()
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "wb") as f:
        f.write(data)
    module = synthetic_towns if FLAGS.family == "towns" else synthetic
    print(
        f"wrote {FLAGS.output}: {img.shape[1]}x{img.shape[0]}, {len(data) / 1024:.0f} KB; columns: "
        + ", ".join(list(module.SOURCE_STYLES) + list(module.TARGET_STYLES) + ["labels"])
    )


if __name__ == "__main__":
    app.run(main)
