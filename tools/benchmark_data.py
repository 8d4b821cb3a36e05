"""Throughput of the data pipeline: PNG decode + label map + training augmentation.

Writes `--num_files` 1024x2048 image/label PNG pairs (street-like content with sensor noise, so the files
compress like real photographs: about 3-4 MB each) into a temporary folder in the Cityscapes or GTAV
layout, then measures images per second of
  decode     `Domain.as_dataset()`: read + decode + label map, full resolution;
  augment    the same plus `augment()` at `--crop` (scale, crop, flip, jitter p=.5, blur p=.5);
  episodes   `episodes()` with 3 copies of the domain, `--batch` images per domain per step
             (counts every image of both halves);
and prints one Markdown table row per measurement: wall-clock images/s, the process's CPU seconds per
image (user + sys), the rate that CPU cost implies on all cores of an otherwise idle machine
(cores / CPU s per image, an estimate), and the 1-minute load average before the measurement (other
processes on the machine lower the wall-clock figure).

  python -m tools.benchmark_data [--layout=cityscapes|gtav] [--crop=768] [--num_images=64]
"""

import gc
import os
import resource
import shutil
import tempfile
import time

import numpy as np
from absl import app, flags

from tools import machine

PIPELINES = ("decode", "augment", "episodes")


def street_scene(rng, h, w):
    """A rough street layout (sky, buildings, road, objects) as Cityscapes label ids, plus an image."""
    ids = np.full([h, w], 23, np.uint8)  # sky
    horizon = int(h * rng.uniform(0.35, 0.5))
    x = 0
    while x < w:
        bw = int(rng.integers(w // 16, w // 5))
        top = int(rng.integers(h // 10, horizon))
        ids[top:horizon, x : x + bw] = rng.choice([11, 21, 12])  # building, vegetation, wall
        x += bw
    ids[horizon:] = 7  # road
    ids[horizon:, : w // 8] = 8  # sidewalk
    ids[horizon:, -w // 8 :] = 8
    for _ in range(int(rng.integers(6, 14))):
        oh, ow = int(rng.integers(h // 20, h // 5)), int(rng.integers(w // 40, w // 8))
        y0, x0 = int(rng.integers(horizon - oh // 2, h - oh)), int(rng.integers(0, w - ow))
        ids[y0 : y0 + oh, x0 : x0 + ow] = rng.choice([26, 24, 17, 20, 33, 0, 4])
    palette = rng.integers(0, 256, size=[34, 3])
    image = palette[ids].astype(np.float32)
    yy = np.linspace(0.7, 1.1, h)[:, None, None]
    image = image * yy + rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), ids


def write_tree(root, layout, n, h, w):
    """Writes ``n`` street-like ``h`` x ``w`` image/label PNG pairs in ``layout`` under ``root``; returns the
    domain (``load_domain``)."""
    import tensorflow as tf

    from mgml_tf.data import labels as L
    from mgml_tf.data.datasets import load_domain

    rng = np.random.default_rng(0)
    colours = {c.label_id: c.color for c in L.CITYSCAPES_CLASSES}
    for i in range(n):
        image, ids = street_scene(rng, h, w)
        if layout == "cityscapes":
            ip = f"{root}/leftImg8bit/train/bench/bench_{i:06d}_000019_leftImg8bit.png"
            lp = f"{root}/gtFine/train/bench/bench_{i:06d}_000019_gtFine_labelIds.png"
            label = ids[..., None]
        else:
            ip, lp = f"{root}/images/{i:05d}.png", f"{root}/labels/{i:05d}.png"
            lut = np.zeros([256, 3], np.uint8)
            for k, c in colours.items():
                lut[k] = c
            label = lut[ids]
        for path, arr in ((ip, image), (lp, label)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(tf.io.encode_png(arr).numpy())
    return load_domain(layout, root)


def rate(ds, count_of, n_images, warmup=4):
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    seen, t0, c0 = 0, time.perf_counter(), _cpu_seconds()
    while seen < n_images:
        seen += count_of(next(it))
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    del it  # stop the pipeline's background threads before the next measurement
    gc.collect()
    return seen / wall, cpu / seen


def _cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pipelines(dom, crop, batch):
    """The measured pipelines of a domain: ``(key, name, crop, make dataset, images per element, warm-up)``
    for ``decode``, ``augment`` and ``episodes`` (3 copies of the domain, ``batch`` images per domain)."""
    import tensorflow as tf

    from mgml_tf.data import augment as A
    from mgml_tf.data import episodes as E

    def read_augment(i, paths):
        image, raw = dom.read_raw(*paths)  # as in episodes(): labels mapped after the crop
        return A.augment(image, raw, tf.stack([i, tf.constant(0, tf.int64)]), crop, label_map=dom.label_map)

    yield "decode", "decode + label map", "full", lambda: dom.as_dataset().repeat().prefetch(2), lambda x: 1, 4
    yield (
        "augment",
        "decode + label map + augment",
        crop,
        lambda: tf.data.Dataset.from_tensor_slices((dom.image_paths, dom.label_paths))
        .repeat()
        .enumerate()
        .map(read_augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .prefetch(4),
        lambda x: 1,
        4,
    )
    yield (
        "episodes",
        f"episodes (3 domains x B={batch})",
        crop,
        lambda: E.episodes([dom, dom, dom], batch, crop, seed=0),
        lambda x: int(x[0][0].shape[0] + x[1][0].shape[0]),
        1,
    )


def measure(layout="cityscapes", num_files=8, num_images=96, crop=768, batch=4, height=1024, width=2048, only=None):
    """Writes the files, times the pipelines named in ``only`` (default: all of ``PIPELINES``) and prints a
    Markdown table, one row per pipeline."""
    cores = os.cpu_count()
    only = set(only or PIPELINES)
    tmp = tempfile.mkdtemp(prefix="mgml_bench_")
    try:
        t0 = time.perf_counter()
        dom = write_tree(tmp, layout, num_files, height, width)
        sizes = [os.path.getsize(p) for p in dom.image_paths]
        print(
            f"wrote {len(dom)} pairs in {time.perf_counter() - t0:.1f}s, image PNG mean "
            f"{np.mean(sizes) / 1e6:.1f} MB; {machine.summary(machine.describe())}"
        )
        print(
            "| pipeline | layout | input | crop | images/s (wall) | CPU s/image | cores / CPU s/image | "
            "cores | load avg before |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for key, name, crop_text, make, count_of, warmup in pipelines(dom, crop, batch):
            if key not in only:
                continue
            ds = make()
            load = os.getloadavg()[0]
            ips, cpu = rate(ds, count_of, num_images, warmup=warmup)
            print(
                f"| {name} | {layout} | {height}x{width} PNG | {crop_text} | {ips:.1f} | {cpu:.3f} | "
                f"{cores / cpu:.1f} | {cores} | {load:.1f} |"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------- command line
def _define_flags():
    flags.DEFINE_enum("layout", "cityscapes", ["cityscapes", "gtav"], "label format: ids or colours")
    flags.DEFINE_integer("num_files", 8, "distinct image/label pairs written")
    flags.DEFINE_integer("num_images", 96, "images timed per measurement (after warm-up)")
    flags.DEFINE_integer("crop", 768, "training crop size")
    flags.DEFINE_integer("batch", 4, "images per domain per step (episodes)")
    flags.DEFINE_integer("height", 1024, "image height")
    flags.DEFINE_integer("width", 2048, "image width")
    flags.DEFINE_string("only", "", "comma list of decode,augment,episodes (default: all)")


def _main(argv):
    del argv
    FLAGS = flags.FLAGS
    measure(
        FLAGS.layout,
        FLAGS.num_files,
        FLAGS.num_images,
        FLAGS.crop,
        FLAGS.batch,
        FLAGS.height,
        FLAGS.width,
        FLAGS.only.split(",") if FLAGS.only else None,
    )


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _define_flags()
    app.run(_main, argv)


if __name__ == "__main__":
    main()
