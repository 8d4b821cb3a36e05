"""One command line for every synthetic scene family: one style in one layout, or a family's default suite.

    python -m mgml_tf.synthetic [--family=streets] --style=STYLE --layout=LAYOUT --num_images=N \\
        --output_dir=DIR [--seed=0 --height=256 --width=512 --split=train --print_frequencies]
    python -m mgml_tf.synthetic [--family=streets] [--style=all_defaults] --num_images=N_TRAIN \\
        [--num_val_images=N_VAL --num_source_val_images=N_HELD_OUT] --output_dir=DIR

Bad input stops it with one line on stderr (``mgml_tf.synthetic: error: ...``) and exit status 2, before
anything is written. See docs/SYNTHETIC.md, "Command line". `define_flags` and `run` are the command;
`__main__.py` hands them to absl's `app.run`.
"""

import sys
import time

from mgml_tf.synthetic import families
from mgml_tf.synthetic.layout_writer import LAYOUTS

ALL_DEFAULTS = "all_defaults"
_PROG = "mgml_tf.synthetic"


def define_flags(fv):
    """Define the command's flags in the absl `FlagValues` `fv`."""
    from absl import flags

    styles = "; ".join(f"{name}: {', '.join(families.load(name).STYLES)}" for name in families.FAMILIES)
    flags.DEFINE_string(
        "family", families.DEFAULT_FAMILY, "Scene family: " + ", ".join(families.FAMILIES) + ".", flag_values=fv
    )
    flags.DEFINE_string(
        "style",
        ALL_DEFAULTS,
        f"Style name, or '{ALL_DEFAULTS}' for the family's default suite (every source and target style, one "
        f"sub-directory each). Known: {styles}.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "layout",
        "cityscapes",
        "Dataset layout to write one style in: " + ", ".join(LAYOUTS) + f" (ignored with {ALL_DEFAULTS}).",
        flag_values=fv,
    )
    flags.DEFINE_integer("num_images", None, "Images to write (per source style with all_defaults).", flag_values=fv)
    flags.DEFINE_integer(
        "num_val_images", None, "all_defaults: images per target style (default: --num_images).", flag_values=fv
    )
    flags.DEFINE_integer(
        "num_source_val_images",
        0,
        "all_defaults: held-out images per source style (val split, a seed stream disjoint from the training "
        "images), in OUTPUT_DIR/<style>_val.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "output_dir", None, "Root directory (all_defaults: one sub-directory per style).", flag_values=fv
    )
    flags.DEFINE_integer("seed", 0, "Seed; the same seed gives byte-identical files.", flag_values=fv)
    flags.DEFINE_integer("height", 256, "Image height.", flag_values=fv)
    flags.DEFINE_integer("width", 512, "Image width.", flag_values=fv)
    flags.DEFINE_string(
        "split", "train", "Split directory name (one style; cityscapes, bdd100k, mapillary, idd).", flag_values=fv
    )
    flags.DEFINE_boolean(
        "print_frequencies", False, "Also print per-class image/pixel frequencies (50 scenes).", flag_values=fv
    )


def _write_suite(family, fv):
    """The family's default suite; ValueError (one line) for bad counts before anything is written."""
    num_val = fv.num_val_images if fv.num_val_images is not None else fv.num_images
    for name, value, least in (
        ("num_images", fv.num_images, 1),
        ("num_val_images", num_val, 1),
        ("num_source_val_images", fv.num_source_val_images, 0),
    ):
        if value < least:
            what = "a positive integer" if least else ">= 0"
            raise ValueError(f"{name} must be {what}, got {value}")
    t0 = time.perf_counter()
    specs = family.write_default_suite(
        fv.output_dir,
        fv.num_images,
        num_val,
        fv.seed,
        fv.height,
        fv.width,
        verbose=True,
        num_source_val=fv.num_source_val_images,
    )
    dt = time.perf_counter() - t0
    n = (fv.num_images + fv.num_source_val_images) * len(family.SOURCE_STYLES) + num_val * len(family.TARGET_STYLES)
    print(f"wrote {n} images ({fv.height}x{fv.width}) in {dt:.1f} s: {n / dt:.1f} images/s including PNG/JPEG encoding")
    print("--sources=" + ",".join(specs.sources))
    print("--targets=" + ",".join(specs.targets))


def _write_style(family, fv):
    res = family.write_dataset(
        fv.style, fv.layout, fv.num_images, fv.output_dir, fv.seed, fv.height, fv.width, fv.split, verbose=True
    )
    n = fv.num_images
    print(
        f"wrote {n} images ({fv.height}x{fv.width}, style {fv.style}, layout {fv.layout}, split {fv.split}) in "
        f"{res['seconds_total']:.1f} s: {n / res['seconds_total']:.1f} images/s including encoding, "
        f"{n / max(res['seconds_generate'], 1e-9):.1f} images/s generation alone "
        f"({n / max(res['cpu_seconds_generate'], 1e-9):.1f} per CPU-second of the generating thread)"
    )
    print(res["spec"])


def run(argv, fv):
    """Run the command on parsed flags `fv` (positional arguments `argv`); returns the exit status."""
    if len(argv) > 1:
        return _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        family = families.load(fv.family)
    except ValueError as e:
        return _fail(str(e))
    for name in ("num_images", "output_dir"):
        if fv[name].value is None:
            return _fail(f"--{name} is required")
    try:
        if fv.style == ALL_DEFAULTS:
            _write_suite(family, fv)
        else:
            _write_style(family, fv)
    except ValueError as e:
        return _fail(str(e))
    if fv.print_frequencies:
        img_frac, pix_frac = family.class_frequencies(50, fv.height, fv.width, fv.seed)
        print("class           images  pixels")
        for c, name in enumerate(family.CLASS_NAMES):
            print(f"{name:15s} {img_frac[c]:6.2f}  {100 * pix_frac[c]:5.2f}%")
    return 0


def _fail(msg):
    print(f"{_PROG}: error: {msg}", file=sys.stderr)
    return 2
