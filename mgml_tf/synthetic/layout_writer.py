"""Writing generated (image, label) pairs in published dataset layouts; shared by every synthetic family.

The layouts are the loaders' (`mgml_tf.data.datasets`: `KNOWN_DATASETS`, `FILE_LAYOUTS` with its folders,
suffixes and split folders), so what is written is what `load_domain` lists; this module adds only the file
names, the label encoding of each layout (see docs/SYNTHETIC.md, "The written layouts") and atomic writes
(temporary file, then rename).  It knows nothing about scenes: a family passes a function that makes image `i`.
"""

import collections
import json
import os
import sys
import time

import numpy as np

from mgml_tf.data.datasets import FILE_LAYOUTS, KNOWN_DATASETS
from mgml_tf.synthetic.labels import (
    TRAIN_TO_COLOR,
    TRAIN_TO_LABEL_ID,
    TRAIN_TO_MAPILLARY,
    TRAIN_TO_SYNTHIA,
    TRAIN_TO_TRAIN,
)

#: The layouts a family can write: the loaders' dataset list itself (not a copy).
LAYOUTS = KNOWN_DATASETS
MIN_SIZE = 32

# SYNTHETIC.json keys that must match for a second split to be added to an existing root's record.
_SAME_ROOT_KEYS = ("generator", "style", "layout", "seed", "height", "width")


def check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known layouts: {', '.join(LAYOUTS)}")


def check_size(height, width):
    for name, val in (("height", height), ("width", width)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < MIN_SIZE:
            raise ValueError(f"{name} must be an integer >= {MIN_SIZE}, got {val!r}")


def check_write_args(layout, num_images, height, width, split):
    """ValueError (one line) for a bad layout, image count, size or split name."""
    check_layout(layout)
    if not isinstance(num_images, (int, np.integer)) or isinstance(num_images, bool) or num_images <= 0:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    check_size(height, width)
    if not isinstance(split, str) or not split or os.sep in split:
        raise ValueError(f"split must be a plain directory name such as 'train' or 'val', got {split!r}")


def _file_name(layout, style_name, index):
    """(sub-folders, stem) of image `index` under its layout's image and label folders."""
    name = style_name.replace("_", "")
    if layout == "gtav":
        return (), f"{index + 1:05d}"  # numbered from 1, as GTAV
    if layout == "synthia":
        return (), f"{index:07d}"  # numbered from 0, as RAND_CITYSCAPES
    if layout == "cityscapes":  # the style (without underscores) is the city
        return (name,), f"{name}_000000_{index:06d}"
    if layout == "bdd100k":
        return (), f"{name}-{index:07d}"
    if layout == "mapillary":
        return (), f"{name}{index:07d}"
    if layout == "idd":  # 100 frames per sequence folder
        return (f"{index // 100}",), f"{index:06d}"
    raise AssertionError(layout)


def paths(layout, root, split, style_name, index):
    """(image path, label path) of image `index` in `layout` under `root` (folders and suffixes from the
    loaders' `FILE_LAYOUTS`; GTAV and Synthia have no split folders, so `split` does not change their paths)."""
    file_layout = FILE_LAYOUTS[layout]
    sub, stem = _file_name(layout, style_name, index)
    image_dir, label_dir = file_layout.dirs(root, split)
    return (
        os.path.join(image_dir, *sub, stem + file_layout.image_suffix),
        os.path.join(label_dir, *sub, stem + file_layout.label_suffix),
    )


def encode_label(layout, label):
    """Train-id map [H, W] -> the array written as that layout's label PNG (dtype and channels as stored).

    gtav: Cityscapes colours [H, W, 3] uint8; synthia: [H, W, 3] uint16 with the Synthia class id in channel 0
    (terrain, truck, train -> 0 void); cityscapes: Cityscapes label ids [H, W, 1]; bdd100k, idd: train ids
    [H, W, 1]; mapillary: Mapillary v1.2 ids [H, W, 1] (one id per train id; 65 "Unlabeled" for ignore).
    """
    check_layout(layout)
    label = np.asarray(label, np.uint8)
    if layout == "gtav":
        return TRAIN_TO_COLOR[label]
    if layout == "synthia":
        out = np.zeros(label.shape + (3,), np.uint16)
        out[..., 0] = TRAIN_TO_SYNTHIA[label]
        return out
    table = {
        "cityscapes": TRAIN_TO_LABEL_ID,
        "bdd100k": TRAIN_TO_TRAIN,
        "idd": TRAIN_TO_TRAIN,
        "mapillary": TRAIN_TO_MAPILLARY,
    }[layout]
    return table[label][..., None]


def write_file(path, data):
    """Write bytes atomically: a reader never sees a half-written file under `path`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_style(
    generator,
    generate_scene,
    image_rng,
    style,
    layout,
    num_images,
    output_dir,
    seed,
    height,
    width,
    split,
    held_out=False,
    verbose=False,
):
    """One family's ``write_dataset``: checks the arguments, then writes image ``i`` as
    ``generate_scene(style, height, width, image_rng(style, seed, i, held_out))`` with the SYNTHETIC.json record
    of ``generator`` (the family's module name)."""
    check_write_args(layout, num_images, height, width, split)
    meta = {
        "generator": generator,
        "style": style.name,
        "layout": layout,
        "seed": int(seed),
        "height": int(height),
        "width": int(width),
    }
    if held_out:
        meta["held_out"] = True
    return write_images(
        lambda i: generate_scene(style, height, width, image_rng(style, seed, i, held_out)),
        style.name,
        layout,
        num_images,
        output_dir,
        split,
        meta,
        verbose,
    )


def write_images(make_image, style_name, layout, num_images, output_dir, split, meta, verbose=False):
    """Write images 0..num_images-1 (`make_image(i) -> (image, label)`) and the root's SYNTHETIC.json.

    `meta` holds generator, style, layout, seed, height and width; the record of an existing SYNTHETIC.json
    with the same values keeps its other splits.  Arguments must be checked (`check_write_args`) first.
    Returns the `write_dataset` result dict (spec, pairs, seconds_generate, cpu_seconds_generate,
    seconds_total).
    """
    import tensorflow as tf  # only the encoders need it

    root = os.path.abspath(output_dir)
    pairs = []
    t_gen = cpu_gen = 0.0
    t0 = time.perf_counter()
    for i in range(num_images):
        g0, c0 = time.perf_counter(), time.thread_time()
        image, label = make_image(i)
        t_gen += time.perf_counter() - g0
        cpu_gen += time.thread_time() - c0
        ipath, lpath = paths(layout, root, split, style_name, i)
        if ipath.endswith(".jpg"):
            data = tf.io.encode_jpeg(image, quality=92, chroma_downsampling=False).numpy()
        else:
            data = tf.io.encode_png(image, compression=3).numpy()
        write_file(ipath, data)
        write_file(lpath, tf.io.encode_png(encode_label(layout, label)).numpy())
        pairs.append((ipath, lpath))
        if verbose and (i + 1) % 50 == 0:
            print(f"  {style_name}: {i + 1}/{num_images}", file=sys.stderr)
    total = time.perf_counter() - t0
    meta = dict(meta, splits={split: int(num_images)})
    meta_path = os.path.join(root, "SYNTHETIC.json")
    if os.path.exists(meta_path):
        try:
            with open(meta_path) as f:
                old = json.load(f)
            if all(old.get(k) == meta[k] for k in _SAME_ROOT_KEYS):
                meta["splits"] = {**old.get("splits", {}), split: int(num_images)}
        except (OSError, ValueError):
            pass
    write_file(meta_path, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    return {
        "spec": f"{layout}:{root}",
        "pairs": pairs,
        "seconds_generate": t_gen,
        "cpu_seconds_generate": cpu_gen,
        "seconds_total": total,
    }


SuiteSpecs = collections.namedtuple("SuiteSpecs", ["sources", "targets"])


def write_suite(
    write_dataset,
    suite,
    source_styles,
    output_dir,
    num_train,
    num_val,
    seed,
    height,
    width,
    verbose=False,
    num_source_val=0,
):
    """Every style of a family's ``suite`` (``{style: layout}``) in ``output_dir/<style>``: source styles
    (``source_styles``) get ``num_train`` images in the train split, the others ``num_val`` in the val split;
    with ``num_source_val`` > 0 each source style also gets that many held-out images (val split, same layout,
    the held-out seed stream of ``write_dataset``) in ``output_dir/<style>_val``.

    Returns ``SuiteSpecs(sources, targets)`` of "layout:root" strings (held-out roots are not in them)."""
    sources, targets = [], []
    for name, layout in suite.items():
        is_source = name in source_styles
        res = write_dataset(
            name,
            layout,
            num_train if is_source else num_val,
            os.path.join(output_dir, name),
            seed=seed,
            height=height,
            width=width,
            split="train" if is_source else "val",
            verbose=verbose,
        )
        (sources if is_source else targets).append(res["spec"])
        if is_source and num_source_val:
            write_dataset(
                name,
                layout,
                num_source_val,
                os.path.join(output_dir, name + "_val"),
                seed=seed,
                height=height,
                width=width,
                split="val",
                verbose=verbose,
                held_out=True,
            )
    return SuiteSpecs(sources, targets)
