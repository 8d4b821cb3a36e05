"""Hostile image files: what a refusal costs in memory, and what the header checks cost on ordinary files.

    python -m tools.hostile_files [--pairs=400] [--size=64] [--rounds=5]

``memory``: a child process (its peak resident set size ``VmHWM`` is its own, not inherited) first reads a small
image as every reader does (the loaders' tf.data pipeline, ``check_image_file``, predict's ``read_image``), a 64 x
64 PNG or JPEG and a truncated copy of it (refused: the readers' error paths) for each hostile file below: its
normal size. It then gives the same readers files whose headers declare the largest sizes PNG and JPEG can (2^31-1
x 2^31-1 and 65535 x 65535 pixels), a valid PNG of 12000 x 12000 black pixels (0.4 MB on disk, 432 MB decoded) and
a 6 x 4 PNG whose compressed data inflates to 256 MiB; each is refused in one line, and the peak after the refusals
is compared with the normal size. Last, TensorFlow decodes the valid 12000 x 12000 PNG and the 6 x 4 one directly,
without the checks: the peak and the time they take show what the checks prevent.

``cost``: ``--pairs`` pairs of ``--size`` x ``--size`` PNGs in the GTAV layout, read ``--rounds`` times
(interleaved) through ``Domain.as_dataset`` (every check: structure, declared size within the pixel limit, PNG
bytes, size agreement, then decoding and the label map), through the same pipeline without the declared-size
checks, and through one that only reads and decodes; the median CPU seconds (all threads) per pair of each.

The crafting functions (``png``, ``zeros_idat``, ``jpeg_declaring``) are what tests/test_hostile_files.py uses.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib

PNG_MAX_SIDE = 2**31 - 1  # IHDR: width and height are at most 2^31 - 1
JPEG_MAX_SIDE = 65535  # SOF: 16-bit height and width


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, idat, depth=8, colour_type=2):
    """A PNG of the given IHDR and one IDAT chunk holding ``idat`` (a zlib stream), ending in IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def zeros_idat(width, height, channels=3, extra=0):
    """The zlib stream of a black 8-bit image's rows (filter byte 0 each), followed by ``extra`` more zero bytes:
    compressed 1000:1, written in 1 MiB pieces (never all in memory)."""
    compressor = zlib.compressobj(9)
    total = height * (1 + width * channels) + extra
    piece = bytes(1 << 20)
    out = []
    while total > 0:
        out.append(compressor.compress(piece[: min(total, len(piece))]))
        total -= len(piece)
    out.append(compressor.flush())
    return b"".join(out)


def jpeg_declaring(width, height):
    """A real 8 x 8 JPEG whose frame header (SOF0) is rewritten to declare ``width`` x ``height``: the header
    readers (``tf.io.extract_jpeg_shape``, the loaders) see the declared size."""
    import numpy as np
    import tensorflow as tf

    data = bytearray(tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy())
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def hostile_files(folder):
    """Writes the memory section's files into ``folder``; returns ``{name: (path, declared width, height)}``."""
    files = {
        "largest_png_header": (png(PNG_MAX_SIDE, PNG_MAX_SIDE, zeros_idat(1, 1)), PNG_MAX_SIDE, PNG_MAX_SIDE),
        "largest_jpeg_header": (jpeg_declaring(JPEG_MAX_SIDE, JPEG_MAX_SIDE), JPEG_MAX_SIDE, JPEG_MAX_SIDE),
        "valid_png_12000x12000": (png(12000, 12000, zeros_idat(12000, 12000)), 12000, 12000),
        "png_inflating_to_256MiB": (png(6, 4, zeros_idat(6, 4, extra=256 << 20)), 6, 4),
    }
    out = {}
    for name, (data, width, height) in files.items():
        path = os.path.join(folder, name + (".jpg" if "jpeg" in name else ".png"))
        with open(path, "wb") as f:
            f.write(data)
        out[name] = (path, width, height)
    return out


def _vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _gtav_tree(root, image, label):
    """A one-pair GTAV layout whose image is a link to ``image``; returns the root."""
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    ext = os.path.splitext(image)[1]
    os.symlink(image, os.path.join(root, "images", "0" + ext))
    os.symlink(label, os.path.join(root, "labels", "0.png"))
    return root


def _every_reader(path, label, root):
    """Reads ``path`` as each reader does; returns ``[(reader, one-line error or None)]``."""
    import tensorflow as tf

    from mgml_tf.cli.predict import read_image
    from mgml_tf.data import datasets as D
    from mgml_tf.errors import RunError

    results = []
    try:
        D.check_image_file(path)
        results.append(("check_image_file", None))
    except D.CorruptFileError as e:
        results.append(("check_image_file", str(e)))
    try:
        read_image(path)
        results.append(("predict.read_image", None))
    except RunError as e:
        results.append(("predict.read_image", str(e)))
    try:
        list(D.load_domain("gtav", _gtav_tree(root, path, label)).as_dataset())
        results.append(("tf.data pipeline", None))
    except tf.errors.InvalidArgumentError as e:
        results.append(("tf.data pipeline", " ".join(e.message.split())))
    return results


def child_memory(folder):
    """The memory section, in this (fresh) process; prints its JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    files = hostile_files(folder)
    label = os.path.join(folder, "label.png")
    with open(label, "wb") as f:
        f.write(tf.io.encode_png(np.zeros((64, 64, 1), np.uint8)).numpy())
    small = {}
    for ext, encode in ((".png", tf.io.encode_png), (".jpg", tf.io.encode_jpeg)):
        small[ext] = os.path.join(folder, "small" + ext)
        with open(small[ext], "wb") as f:
            f.write(encode(np.full((64, 64, 3), 128, np.uint8)).numpy())
    truncated = {}
    for ext, path in small.items():  # an ordinary bad file: the readers' error paths are part of the normal size
        truncated[ext] = os.path.join(folder, "truncated" + ext)
        with open(path, "rb") as f, open(truncated[ext], "wb") as out:
            out.write(f.read()[: os.path.getsize(path) // 2])
    for name, (path, _, _) in files.items():  # the same readers on the same kinds of file, as many times
        ext = os.path.splitext(path)[1]
        normal = _every_reader(small[ext], label, os.path.join(folder, f"tree_small_{name}"))
        assert all(error is None for _, error in normal), normal
        refused = _every_reader(truncated[ext], label, os.path.join(folder, f"tree_truncated_{name}"))
        assert all(error is not None for _, error in refused), refused
    report = {"normal_peak_mb": _vm_hwm_mb(), "refused": {}}
    for name, (path, width, height) in files.items():
        lines = _every_reader(path, label, os.path.join(folder, "tree_" + name))
        report["refused"][name] = {
            "declared": f"{width}x{height}",
            "file_bytes": os.path.getsize(path),
            "errors": dict(lines),
        }
    report["peak_after_refusals_mb"] = _vm_hwm_mb()
    for name in ("valid_png_12000x12000", "png_inflating_to_256MiB"):
        path = files[name][0]
        start = time.perf_counter()
        shape = tf.io.decode_png(tf.io.read_file(path), channels=3).shape
        report[f"tf_decode_{name}"] = {
            "shape": list(shape),
            "seconds": round(time.perf_counter() - start, 2),
            "peak_after_mb": _vm_hwm_mb(),
        }
    print(json.dumps(report))


def memory():
    """Runs ``child_memory`` in a fresh interpreter; returns its report."""
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.run(
            [sys.executable, "-m", "tools.hostile_files", f"--child_memory={folder}"],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cost(pairs, size, rounds):
    """Median CPU seconds per pair of three pipelines over the same files: the loaders' (``Domain.as_dataset``: every
    check, then decoding and the label map), the same without the declared-size checks (pixel limit, PNG bytes),
    and reading and decoding only."""
    import numpy as np
    import tensorflow as tf

    from mgml_tf.data import datasets as D

    with tempfile.TemporaryDirectory() as root:
        for sub in ("images", "labels"):
            os.makedirs(os.path.join(root, sub))
        rng = np.random.default_rng(0)
        for i in range(pairs):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            with open(os.path.join(root, "images", f"{i:05d}.png"), "wb") as f:
                f.write(tf.io.encode_png(image).numpy())
            with open(os.path.join(root, "labels", f"{i:05d}.png"), "wb") as f:
                f.write(tf.io.encode_png(image[..., :1] % 19).numpy())
        domain = D.load_domain("gtav", root)
        fmt = domain.label_format

        def decode_only(image_path, label_path):
            return D.decode_image(tf.io.read_file(image_path)), D.decode_label(tf.io.read_file(label_path), fmt)

        def dataset(read):
            paths = tf.data.Dataset.from_tensor_slices((domain.image_paths, domain.label_paths))
            return paths.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

        checked = dataset(domain.read)
        real_check = D._declared_size_check
        D._declared_size_check = lambda *args: tf.constant(True)  # traced now, with the check left out
        try:
            without_size_checks = dataset(domain.read)
        finally:
            D._declared_size_check = real_check
        pipelines = {
            "loaders": checked,
            "loaders_without_declared_size_checks": without_size_checks,
            "read_and_decode_only": dataset(decode_only),
        }
        times = {name: [] for name in pipelines}
        for _ in range(rounds + 1):  # the first round warms the file cache and the pipelines: not counted
            for name, pipeline in pipelines.items():
                start = time.process_time()  # CPU seconds of every thread: other jobs on the machine do not count
                for _ in pipeline:
                    pass
                times[name].append((time.process_time() - start) / pairs)
        return {name: float(np.median(values[1:])) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child_memory", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        child_memory(args.child_memory)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    report = {"memory": memory(), "cost": cost(args.pairs, args.size, args.rounds)}
    report["cost"]["pairs"], report["cost"]["size"] = args.pairs, args.size
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
