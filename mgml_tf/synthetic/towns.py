"""The "towns" family: ray-cast 3-D towns through distorted cameras, in six styles.

Independent of the "streets" family (`mgml_tf.synthetic.streets`): its own camera models (rectilinear,
stereographic-like, fisheye; pitch, roll, rolling shutter), street plans (curves, hills, cross streets,
roundabouts, plazas, one-way alleys, tram tracks, parking lanes), object shapes (boxy or rounded vehicles,
capsule people, low-poly trees, stepped and domed buildings) and styles.  Only the dataset-layout writing
(`mgml_tf.synthetic.layout_writer`) and the Cityscapes class table (`mgml_tf.synthetic.labels`) are shared.
Same API as `streets`, so a caller can switch family by module (`mgml_tf.synthetic.families`).

Python::

    from mgml_tf.synthetic import towns
    image, label = towns.generate_scene("dusk_dashcam", 128, 256, rng=0)
    sources, targets = towns.write_default_suite("/tmp/towns", num_train=100, num_val=25)

Command line (`mgml_tf.synthetic.cli`)::

    python -m mgml_tf.synthetic --family=towns --num_images=100 --num_val_images=25 --output_dir=/tmp/towns

See docs/SYNTHETIC.md, "The towns family".
"""

import collections
import zlib

import numpy as np

from mgml_tf.synthetic import layout_writer
from mgml_tf.synthetic._towns_scene import Town, render_town
from mgml_tf.synthetic._towns_styles import SOURCE_STYLES, STYLES, TARGET_STYLES, TownStyle, shade
from mgml_tf.synthetic.labels import CLASS_NAMES, NUM_CLASSES, colorize
from mgml_tf.synthetic.layout_writer import LAYOUTS, encode_label

# The class table, town renderer, styles and layouts are re-exported: this module is the family's API.
__all__ = [
    "CLASS_NAMES",
    "DEFAULT_SUITE",
    "GENERATOR",
    "HELD_OUT_STREAM",
    "LAYOUTS",
    "NUM_CLASSES",
    "SOURCE_STYLES",
    "STYLES",
    "TARGET_STYLES",
    "Town",
    "TownStyle",
    "class_frequencies",
    "colorize",
    "encode_label",
    "generate_scene",
    "get_style",
    "image_rng",
    "render_town",
    "shade",
    "write_dataset",
    "write_default_suite",
]

#: style -> layout: sources in the GTAV, Synthia and IDD layouts (train split), targets in the Cityscapes,
#: BDD100K and Mapillary layouts (val split), like the streets family's suite.
DEFAULT_SUITE = collections.OrderedDict(
    [
        ("clay_lowpoly", "gtav"),
        ("snow_sim", "synthia"),
        ("neon_comic", "idd"),
        ("dusk_dashcam", "cityscapes"),
        ("hazy_sepia", "bdd100k"),
        ("teal_drizzle", "mapillary"),
    ]
)

SuiteSpecs = layout_writer.SuiteSpecs
#: The generator identity recorded in SYNTHETIC.json ("generator"): the module path before the move to
#: mgml_tf.synthetic, kept so that roots written before it still match (see `streets.GENERATOR`).
GENERATOR = "mgml_tf.data.synthetic_towns"
#: Seed-stream tag of the held-out source images (`write_default_suite(num_source_val=...)`): their image
#: rngs never coincide with those of the training images of the same style and seed.
HELD_OUT_STREAM = 0x7E1D


def get_style(style):
    """A `TownStyle` from a style name or a `TownStyle`; ValueError (one line, listing the names) otherwise."""
    if isinstance(style, TownStyle):
        return style
    if isinstance(style, str) and style in STYLES:
        return STYLES[style]
    raise ValueError(f"unknown towns style {style!r}; known styles: {', '.join(STYLES)}")


def generate_scene(style, height=256, width=512, rng=None):
    """One random town in `style`: (image uint8 [H, W, 3], label uint8 [H, W] of train ids 0..18).

    `rng` is a `numpy.random.Generator`, an int seed or None.  The layout is drawn first, so the same
    generator state gives the same label map in every style."""
    style = get_style(style)
    layout_writer.check_size(height, width)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    town = render_town(rng, height, width)
    return shade(town, style, rng), town.label


def image_rng(style, seed, index, held_out=False):
    """The generator of image `index` of `style` under `seed`; `held_out` selects the disjoint stream of
    the held-out source images."""
    name = get_style(style).name
    key = [int(seed), zlib.crc32(b"towns:" + name.encode()), int(index)]
    return np.random.default_rng(key + [HELD_OUT_STREAM] if held_out else key)


def write_dataset(
    style, layout, num_images, output_dir, seed=0, height=256, width=512, split="train", verbose=False, held_out=False
):
    """Write `num_images` towns of `style` under `output_dir` in the published `layout`.

    Image i comes from `image_rng(style, seed, i, held_out)`: the same arguments give byte-identical files.
    Paths, label encodings and the result dict are those of `streets.write_dataset`."""
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
    """Write every source style (train split) and target style (val split) in `output_dir/<style>`.

    With `num_source_val` > 0 each source style also gets that many held-out images (val split, same layout,
    a seed stream disjoint from the training images) in `output_dir/<style>_val`.
    Returns SuiteSpecs(sources, targets) of "layout:root" strings (held-out roots are not in them)."""
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
    present, pixels = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES)
    for _ in range(num_images):
        counts = np.bincount(render_town(rng, height, width).label.ravel(), minlength=NUM_CLASSES)
        present += counts > 0
        pixels += counts
    return present / num_images, pixels / pixels.sum()
