"""Where one training step's time goes: the TensorFlow profiler over a few steps, summed by op type and by
model block.

    python -m tools.profile_train_step --method=mgml --meta_order=2 [--backbone=resnet50] [--size=256]
        [--batch_per_domain=2] [--steps=2] [--threads=2] [--kernels=fast|fallback] [--logdir=DIR] [--top=25]

The step is the one ``tools/refcmp/worker_tf.py`` times against the reference: ``tf.function(model.train_step)``
of ``mgml_tf.build_model(backbone, head="deeplabv3plus", num_classes=19)`` on one episode of two domains of
random images. ``--kernels=fallback`` traces it with the fallback kernels (dilated convolutions through
space-to-batch, BatchNorm with two-pass moments). The table sums the op events of every TensorFlow thread
(so its total exceeds the wall time on several threads) and divides by ``--steps``; the profile itself stays
in ``--logdir`` for TensorBoard's profile plugin. ``profile`` does the work.
"""

import collections
import glob
import os
import re
import tempfile
import time

from absl import app, flags


def block_name(op_name):
    """``forward|backward <layer>[/<ResNet stage>]`` of an op name such as
    ``gradient_tape/resnet50_1/conv5_block3_2_conv_1/Conv2D``."""
    parts = [re.sub(r"_\d+$", "", p) for p in op_name.split("/") if p and p != "gradient_tape"]
    block = parts[0] if parts else "?"
    stage = re.match(r"(conv\d)_", parts[1]) if len(parts) > 2 else None
    if stage:
        block += "/" + stage.group(1)
    return ("backward " if op_name.startswith("gradient_tape") else "forward ") + block


def op_table(logdir, steps):
    """``({op type: ms per step}, {model block: ms per step}, {op type: count per step})`` of a profile."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    by_type, by_block, count = collections.Counter(), collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                # Op events are "scope/name:Type"; executor and eager bookkeeping ("ExecutorState::Process",
                # "EagerLocalExecute: ...") nests them and is left out.
                if ":" not in name or "::" in name or " " in name:
                    continue
                op_name, op_type = name.rsplit(":", 1)
                ms = event.duration_ps / 1e9 / steps
                by_type[op_type] += ms
                count[op_type] += 1 / steps
                by_block[block_name(op_name)] += ms
    return by_type, by_block, count


def profile(
    method="mgml",
    meta_order=2,
    backbone="resnet50",
    size=256,
    batch_per_domain=2,
    steps=2,
    threads=2,
    kernels="fast",
    logdir=None,
    top=25,
):
    """Profiles ``steps`` train steps (after two untimed ones) and prints the ``top`` rows of the op-type and
    model-block tables; returns ``(by_type, by_block, count)`` of ``op_table``."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    import mgml_tf
    from mgml_tf.layers import convolution, normalization

    if kernels == "fallback":
        convolution.set_dilated_convolution_mode("space_to_batch")
        normalization.set_batch_norm_mode("two_pass")
    rng = np.random.default_rng(0)
    shape = (batch_per_domain, size, size)
    episode = tuple(
        (
            tf.constant(rng.uniform(0, 255, size=shape + (3,)).astype(np.float32)),
            tf.constant(rng.integers(0, 19, size=shape).astype(np.int32)),
        )
        for _ in range(2)
    )
    keras.utils.set_random_seed(0)
    options = dict(method=method)
    if method in ("mgml", "mldg"):
        options["meta_order"] = meta_order
    model = mgml_tf.build_model(backbone=backbone, head="deeplabv3plus", num_classes=19, **options)
    step = tf.function(model.train_step, reduce_retracing=True)
    for _ in range(2):
        float(step(episode)["loss"])
    logdir = logdir or tempfile.mkdtemp(prefix="mgml_profile_")
    start = time.perf_counter()
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        float(step(episode)["loss"])
    tf.profiler.experimental.stop()
    wall = (time.perf_counter() - start) / steps
    convolution.set_dilated_convolution_mode(None)  # the default kernels again
    normalization.set_batch_norm_mode(None)
    by_type, by_block, count = op_table(logdir, steps)
    total = sum(by_type.values())
    print(
        f"{method} meta_order={meta_order} {backbone} {size}x{size}, "
        f"2x{batch_per_domain} images, kernels {kernels}, {threads} threads: "
        f"{wall:.2f} s per profiled step (wall, profiler on); op time {total / 1e3:.2f} s per step "
        f"(summed over threads); profile in {logdir}"
    )
    print("\n| op type | ms per step | share | ops per step |\n|---|---:|---:|---:|")
    for op_type, ms in by_type.most_common(top):
        print(f"| {op_type} | {ms:.0f} | {100 * ms / total:.1f}% | {count[op_type]:.0f} |")
    print("\n| block | ms per step | share |\n|---|---:|---:|")
    for block, ms in by_block.most_common(top):
        print(f"| {block} | {ms:.0f} | {100 * ms / total:.1f}% |")
    return by_type, by_block, count


# ---------------------------------------------------------------------------------------- command line
def _define_flags():
    flags.DEFINE_string("method", "mgml", "baseline, mldg, mgml or memory_agg")
    flags.DEFINE_integer("meta_order", 2, "0, 1 or 2 (mldg and mgml)")
    flags.DEFINE_string("backbone", "resnet50", "backbone name")
    flags.DEFINE_integer("size", 256, "square crop")
    flags.DEFINE_integer("batch_per_domain", 2, "images per domain (two domains)")
    flags.DEFINE_integer("steps", 2, "profiled steps (after two untimed ones)")
    flags.DEFINE_integer("threads", 2, "intra- and inter-op threads")
    flags.DEFINE_enum(
        "kernels",
        "fast",
        ["fast", "fallback"],
        "fast: the default kernel choice; fallback: space-to-batch dilation and two-pass BatchNorm",
    )
    flags.DEFINE_string("logdir", None, "where the profile goes (default: a new temporary folder)")
    flags.DEFINE_integer("top", 25, "rows of each table")


def _main(argv):
    del argv
    F = flags.FLAGS
    profile(
        F.method, F.meta_order, F.backbone, F.size, F.batch_per_domain, F.steps, F.threads, F.kernels, F.logdir, F.top
    )


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _define_flags()
    app.run(_main, argv)


if __name__ == "__main__":
    main()
