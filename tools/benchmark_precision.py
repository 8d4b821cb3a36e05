"""Train-step time on one device: float32 / mixed_bfloat16 / mixed_float16, each with and without XLA.

    python -m tools.benchmark_precision [--rounds=7] [--crop=96] [--batch_per_domain=2] [--meta_order=2]

Builds one model per precision (the demo architecture of configs/demo.cfg: resnet_small, 64 channels,
3 source domains) and two compiled steps each (``tf.function(train_step)`` and the same with
``jit_compile=True``), all in this process. After a warm-up step (tracing, XLA compilation) the
configurations are timed in interleaved rounds (every round runs each configuration once, in a rotating
order, so that drift of the machine hits all alike); the table gives the median step time, the spread
(min-max) and the ratio to float32 without XLA, as Markdown. Inputs are fixed random episodes (one
meta-train domain, two meta-test domains) so that the input pipeline is not measured. ``measure`` does the
work.
"""

import argparse
import os
import re
import statistics
import sys
import time

from tools import machine

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
ARCH = dict(
    backbone="resnet_small",
    head="deeplabv3plus",
    num_classes=19,
    feature_channels=64,
    decoder_channels=64,
    low_level_channels=16,
    aspp_rates=(2, 4, 6),
    method="mgml",
    learning_rate=0.01,
    lr_schedule="constant",
    dropout=0.0,
)


def episode(crop, batch, num_classes, seed=0):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def half(n):
        images = rng.uniform(0, 255, size=(n, crop, crop, 3)).astype("float32")
        labels = rng.integers(0, num_classes, size=(n, crop, crop)).astype("int32")
        return tf.constant(images), tf.constant(labels)

    return half(batch), half(2 * batch)


def measure(rounds=7, crop=96, batch_per_domain=2, meta_order=2, precisions=PRECISIONS, xla=True):
    """Times the train step of every precision in ``precisions``, with and (``xla``) without XLA, in ``rounds``
    interleaved rounds; prints the Markdown table. Returns ``(precision, xla, seconds per round or an error)``
    rows."""
    import keras
    import numpy as np
    import tensorflow as tf

    import mgml_tf

    data = episode(crop, batch_per_domain, ARCH["num_classes"])
    configs = []  # (precision, xla, step function, model)
    for precision in precisions:
        keras.config.set_dtype_policy(precision)
        keras.utils.set_random_seed(0)
        model = mgml_tf.build_model(**ARCH, meta_order=meta_order)
        keras.config.set_dtype_policy("float32")
        for jit in (False, True) if xla else (False,):
            configs.append([precision, jit, tf.function(model.train_step, jit_compile=jit), model, None, []])
    for c in configs:  # warm-up: tracing (and XLA compilation)
        t0 = time.perf_counter()
        try:
            logs = c[2](data)
            loss = float(logs["loss"])
            c[4] = f"first step {time.perf_counter() - t0:.1f} s, loss {loss:.3f}"
        except Exception as e:  # noqa: BLE001  (report, e.g. an op XLA cannot compile)
            text = " ".join(str(getattr(e, "message", e)).split())
            ops = sorted(set(re.findall(r"(\w+) \(No registered '\w+' OpKernel for XLA_\w+ devices", text)))
            c[4] = (
                f"fails: {type(e).__name__}: XLA has no kernel for {', '.join(ops)} in this dtype"
                if ops
                else f"fails: {type(e).__name__}: {text[:200]}"
            )
            c[2] = None
        print(f"warm-up {c[0]:<15} xla={c[1]!s:<5} {c[4]}", file=sys.stderr, flush=True)
    live = [c for c in configs if c[2] is not None]
    for r in range(rounds):
        order = live[r % len(live) :] + live[: r % len(live)]
        for c in order:
            t0 = time.perf_counter()
            logs = c[2](data)
            float(logs["loss"])  # waits for the step
            c[5].append(time.perf_counter() - t0)
    base = next((statistics.median(c[5]) for c in live if c[0] == "float32" and not c[1]), None)
    images = 3 * batch_per_domain
    print(
        f"Train step (MGML, meta_order={meta_order}, demo architecture, {images} images of "
        f"{crop}x{crop} per step), one device, median of {rounds} interleaved rounds.\n"
    )
    print(f"Machine: {machine.summary(machine.describe())}.\n")
    print("| precision | XLA (jit_compile) | step time, median (min-max) | vs float32 no XLA | running mean loss |")
    print("|---|---|---|---|---|")
    for c in configs:
        if c[2] is None:
            print(f"| {c[0]} | {'yes' if c[1] else 'no'} | {c[4]} | - | - |")
            continue
        med = statistics.median(c[5])
        ratio = f"{med / base:.2f}x" if base else "-"
        loss = float(np.asarray(c[3].get_metrics_result()["loss"])) if hasattr(c[3], "get_metrics_result") else "-"
        print(
            f"| {c[0]} | {'yes' if c[1] else 'no'} | {med * 1000:.0f} ms ({min(c[5]) * 1000:.0f}-"
            f"{max(c[5]) * 1000:.0f}) | {ratio} | {loss if isinstance(loss, str) else f'{loss:.3f}'} |"
        )
    return [(c[0], c[1], c[5] if c[2] is not None else c[4]) for c in configs]


# ---------------------------------------------------------------------------------------- command line
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch_per_domain", type=int, default=2)
    parser.add_argument("--meta_order", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--no_xla", action="store_true", help="Skip the jit_compile rows.")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    measure(args.rounds, args.crop, args.batch_per_domain, args.meta_order, args.precisions.split(","), not args.no_xla)
    return 0


if __name__ == "__main__":
    sys.exit(main())
