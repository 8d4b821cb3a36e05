"""The "streets" family: procedural street scenes written in real dataset layouts.

Each image is a random street layout (road in perspective with lane marks, sidewalks, buildings with windows,
walls, fences, poles with traffic lights and signs, trees, bushes, terrain, sky, people, riders on bicycles and
motorcycles, cars, trucks, buses, trams) rasterised with a z-buffer, so the label map is exact.  A *style*
(domain) decides only the appearance: palettes, textures, lighting, weather, blur, noise.  Classes keep their
shape and context in every style, so a model trained on the source styles has to generalise to the targets.

Python::

    from mgml_tf.synthetic import streets
    image, label = streets.generate_scene("foggy", 256, 512, rng=0)
    streets.write_dataset("night", "bdd100k", 10, "/tmp/night", split="val")
    sources, targets = streets.write_default_suite("/tmp/synth", num_train=200, num_val=50)

Command line (`mgml_tf.synthetic.cli`)::

    python -m mgml_tf.synthetic --style=foggy --layout=cityscapes --num_images=20 --output_dir=/tmp/fog
    python -m mgml_tf.synthetic --num_images=200 --num_val_images=50 --output_dir=/tmp/synth

See docs/SYNTHETIC.md.
"""

import collections
import zlib

import numpy as np

from mgml_tf.synthetic import layout_writer
from mgml_tf.synthetic._streets_scene import Scene, render_scene
from mgml_tf.synthetic._streets_styles import SOURCE_STYLES, STYLES, TARGET_STYLES, Style, stylize
from mgml_tf.synthetic.labels import (
    CLASS_NAMES,
    IGNORE_INDEX,
    NUM_CLASSES,
    SYNTHIA_ABSENT,
    TRAIN_TO_COLOR,
    TRAIN_TO_LABEL_ID,
    TRAIN_TO_MAPILLARY,
    TRAIN_TO_SYNTHIA,
    TRAIN_TO_TRAIN,
    colorize,
)
from mgml_tf.synthetic.layout_writer import LAYOUTS

# The class table, scene renderer, styles and layouts are re-exported: this module is the family's API.
__all__ = [
    "CLASS_NAMES",
    "DEFAULT_SUITE",
    "GENERATOR",
    "HELD_OUT_STREAM",
    "IGNORE_INDEX",
    "LAYOUTS",
    "NUM_CLASSES",
    "SOURCE_STYLES",
    "STYLES",
    "SYNTHIA_ABSENT",
    "TARGET_STYLES",
    "TRAIN_TO_COLOR",
    "TRAIN_TO_LABEL_ID",
    "TRAIN_TO_MAPILLARY",
    "TRAIN_TO_SYNTHIA",
    "TRAIN_TO_TRAIN",
    "Scene",
    "Style",
    "class_frequencies",
    "colorize",
    "encode_label",
    "generate_scene",
    "get_style",
    "image_rng",
    "render_scene",
    "stylize",
    "write_dataset",
    "write_default_suite",
]

#: The embedded default suite: style -> layout it is written in.  Sources mirror the paper's G + S + I
#: (GTAV, Synthia, IDD layouts, train split); targets its C, B, M (Cityscapes, BDD100K, Mapillary, val split).
DEFAULT_SUITE = collections.OrderedDict(
    [
        ("sunny_game", "gtav"),
        ("overcast_sim", "synthia"),
        ("desert_toon", "idd"),
        ("foggy", "cityscapes"),
        ("night", "bdd100k"),
        ("rainy_realistic", "mapillary"),
    ]
)

SuiteSpecs = layout_writer.SuiteSpecs
#: The generator identity recorded in SYNTHETIC.json ("generator"). It is the family's module path before the
#: generator moved from mgml_tf.data to mgml_tf.synthetic, kept so that roots written before the move still
#: match their records and files stay byte-identical: an identity, not an import path; do not change it.
GENERATOR = "mgml_tf.data.synthetic"


def get_style(style):
    """A `Style` from a style name or a `Style`; ValueError (one line, listing the known names) otherwise."""
    if isinstance(style, Style):
        return style
    if isinstance(style, str) and style in STYLES:
        return STYLES[style]
    raise ValueError(f"unknown style {style!r}; known styles: {', '.join(STYLES)}")


_check_layout = layout_writer.check_layout
_check_size = layout_writer.check_size


def _as_rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def generate_scene(style, height=256, width=512, rng=None):
    """One random scene in `style`.

    Args:
      style: a style name (see `STYLES`) or a `Style`.
      height, width: image size in pixels (>= 32).
      rng: a `numpy.random.Generator`, an int seed, or None (fresh entropy).
    Returns:
      (image uint8 [H, W, 3], label uint8 [H, W] of Cityscapes train ids 0..18).
    """
    style = get_style(style)
    _check_size(height, width)
    rng = _as_rng(rng)
    scene = render_scene(rng, height, width)
    return stylize(scene, style, rng), scene.label


#: Seed-stream tag of the held-out source images: their rngs never coincide with the training images'.
HELD_OUT_STREAM = 0x7E1D


def image_rng(style, seed, index, held_out=False):
    """The generator used for image `index` of `style` under `seed` (independent of how many are written);
    `held_out` selects the disjoint stream of the held-out source images."""
    name = get_style(style).name
    key = [int(seed), zlib.crc32(name.encode()), int(index)]
    return np.random.default_rng(key + [HELD_OUT_STREAM] if held_out else key)


# ---------------------------------------------------------------------------------------------- writing
_paths = layout_writer.paths
encode_label = layout_writer.encode_label
_write = layout_writer.write_file


def write_dataset(
    style, layout, num_images, output_dir, seed=0, height=256, width=512, split="train", verbose=False, held_out=False
):
    """Write `num_images` scenes of `style` under `output_dir` in the published `layout`.

    Image i is generated from `image_rng(style, seed, i)`: the same arguments give byte-identical files, and
    the first k images do not depend on `num_images`.  gtav and synthia have no split directories (`split`
    is ignored there; real splits of those sets are lists).  A `SYNTHETIC.json` at the root records the
    arguments.

    `held_out` draws the images from the held-out stream of `image_rng` (and records it in SYNTHETIC.json).

    Returns:
      dict with `spec` ("layout:root"), `pairs` (list of (image path, label path)), `seconds_generate`
      (wall clock spent generating), `cpu_seconds_generate` (CPU time of the same) and `seconds_total`.
    """
    return layout_writer.write_style(
        GENERATOR,
        generate_scene,
        image_rng,
        get_style(style),
        layout,
        num_images,
        output_dir,
        seed,
        height,
        width,
        split,
        held_out,
        verbose,
    )


def write_default_suite(
    output_dir, num_train=200, num_val=50, seed=0, height=256, width=512, verbose=False, num_source_val=0
):
    """Write the embedded default suite: every source style (train split) and target style (val split).

    Layout per style is `DEFAULT_SUITE`: sunny_game -> gtav, overcast_sim -> synthia, desert_toon -> idd
    (sources, `num_train` images each, split "train"); foggy -> cityscapes, night -> bdd100k,
    rainy_realistic -> mapillary (targets, `num_val` images each, split "val"), each in
    `output_dir/<style>`.  With `num_source_val` > 0 each source style also gets that many held-out images
    (split "val", same layout, the held-out seed stream) in `output_dir/<style>_val`.

    Returns:
      SuiteSpecs(sources=[...], targets=[...]) of "layout:root" strings, ready for
      `--sources=",".join(sources)` and `--targets=",".join(targets)`.
    """
    return layout_writer.write_suite(
        write_dataset,
        DEFAULT_SUITE,
        SOURCE_STYLES,
        output_dir,
        num_train,
        num_val,
        seed,
        height,
        width,
        verbose,
        num_source_val,
    )


def class_frequencies(num_images=50, height=256, width=512, seed=0):
    """(fraction of images containing each class [19], fraction of pixels of each class [19])."""
    rng = np.random.default_rng(seed)
    present = np.zeros(NUM_CLASSES)
    pixels = np.zeros(NUM_CLASSES)
    for _ in range(num_images):
        counts = np.bincount(render_scene(rng, height, width).label.ravel(), minlength=NUM_CLASSES)
        present += counts > 0
        pixels += counts
    return present / num_images, pixels / pixels.sum()
