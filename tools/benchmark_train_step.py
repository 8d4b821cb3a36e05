"""Time and peak memory of one training step per method, side by side.

    python -m tools.benchmark_train_step [--configs=small,r50] [--rounds=5] [--output_json=FILE]

For each configuration (``small``: resnet_small DeepLabV3+ at 128x128; ``r50``: ResNet-50 DeepLabV3+ at
256x256), every method gets the same images per step (2 domains x ``batch_per_domain``): ``baseline`` sees
them as one aggregated batch, the meta-learning methods as a meta-train and a meta-test half. Times: all
models live in one process and are stepped in interleaved rounds (each step a compiled ``tf.function`` of
``train_step``, the first call excluded), so machine noise hits every method alike; the table gives the
median and the ratio to ``baseline``. Peak memory: each method runs alone in a child process that reports
its peak resident set size (``VmHWM``) and the growth over its size before the first step.

``measure_times`` and ``measure_memory`` take the methods as an argument (name -> ``build_model`` options;
``METHODS`` by default): ``tools.benchmark`` passes ``METHODS`` with ``memory_agg`` added.
"""

import json
import os
import subprocess
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    "small": dict(
        options=dict(
            backbone="resnet_small", head="deeplabv3plus", num_classes=19, feature_channels=64, decoder_channels=64
        ),
        size=128,
    ),
    "r50": dict(options=dict(backbone="resnet50", head="deeplabv3plus", num_classes=19), size=256),
}
METHODS = {
    "baseline": dict(method="baseline"),
    "mldg (2nd order)": dict(method="mldg", meta_order=2),
    "mgml 1st order": dict(method="mgml", meta_order=1),
    "mgml 2nd order": dict(method="mgml", meta_order=2),
}


def _status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _build(config, options):
    import keras

    import mgml_tf

    keras.utils.set_random_seed(0)
    cfg = CONFIGS[config]
    model = mgml_tf.build_model(**cfg["options"], **options, dropout=0.0)
    return model


def _episode(config, batch_per_domain, seed=0):
    import numpy as np
    import tensorflow as tf

    size = CONFIGS[config]["size"]
    rng = np.random.default_rng(seed)

    def half():
        images = rng.uniform(0, 255, size=(batch_per_domain, size, size, 3)).astype(np.float32)
        labels = rng.integers(0, 19, size=(batch_per_domain, size, size)).astype(np.int32)
        return tf.constant(images), tf.constant(labels)

    return half(), half()


def _compiled_step(model):
    import tensorflow as tf

    return tf.function(model.train_step, reduce_retracing=True)


def run_child(config, options, batch_per_domain):
    """Two steps of one method (``build_model`` options) in this process; prints its memory as JSON."""
    model = _build(config, options)
    step = _compiled_step(model)
    data = _episode(config, batch_per_domain)
    before = _status_mb("VmRSS")
    step(data)
    step(data)
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak.
    peak = _status_mb("VmHWM")
    print(json.dumps({"rss_before_mb": before, "peak_rss_mb": peak}))


def measure_memory(config, options, batch_per_domain):
    """``{rss_before_mb, peak_rss_mb}`` of one method (``build_model`` options) alone in a child process."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.benchmark_train_step",
            f"--child={config}:{json.dumps(options)}",
            f"--batch_per_domain={batch_per_domain}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_times(config, rounds, batch_per_domain, methods=METHODS):
    """Median step time (s) of each method (name -> ``build_model`` options), all stepped in ``rounds``
    interleaved rounds in this process."""
    import numpy as np

    data = _episode(config, batch_per_domain)
    steps = {}
    for method, options in methods.items():
        model = _build(config, options)
        steps[method] = _compiled_step(model)
        steps[method](data)  # trace and first run, not timed
    times = {m: [] for m in methods}
    for _ in range(rounds):
        for method, step in steps.items():
            start = time.perf_counter()
            logs = step(data)
            float(logs["loss"])  # wait for the step to finish
            times[method].append(time.perf_counter() - start)
    return {m: float(np.median(t)) for m, t in times.items()}


def benchmark(configs, rounds, batch_per_domain, memory=True, times=True, output_json=None, methods=METHODS):
    """Times and peak memory of every method for each configuration; prints a Markdown table per
    configuration and returns (and writes to ``output_json``) the results."""
    from tools import machine

    results = {
        "machine": machine.summary(machine.describe()),
        "batch_per_domain": batch_per_domain,
        "rounds": rounds,
        "configs": {},
    }
    for config in configs:
        size = CONFIGS[config]["size"]
        rows = {method: {} for method in methods}
        if memory:  # children first, while this process is still small
            for method, options in methods.items():
                rows[method].update(measure_memory(config, options, batch_per_domain))
        if times:
            medians = measure_times(config, rounds, batch_per_domain, methods)
            for method in methods:
                rows[method].update(step_s=medians[method], ratio=medians[method] / medians["baseline"])
        results["configs"][config] = rows
        print(
            f"\n{config}: {CONFIGS[config]['options']['backbone']} DeepLabV3+ at {size}x{size}, "
            f"{2 * batch_per_domain} images per step, median of {rounds} rounds"
        )
        print("| method | step (s) | x baseline | peak RSS (MB) | growth in step (MB) |")
        print("|---|---:|---:|---:|---:|")
        for method, row in rows.items():
            mem = (
                f"{row['peak_rss_mb']:.0f} | {row['peak_rss_mb'] - row['rss_before_mb']:.0f}"
                if "peak_rss_mb" in row
                else "- | -"
            )
            timing = f"{row['step_s']:.3f} | {row['ratio']:.2f}" if "step_s" in row else "- | -"
            print(f"| {method} | {timing} | {mem} |")
    if output_json:
        with open(output_json, "w") as f:
            json.dump(results, f, indent=2)
    return results


# ---------------------------------------------------------------------------------------- command line
def _define_flags():
    flags.DEFINE_list("configs", ["small", "r50"], "Configurations to run: small, r50.")
    flags.DEFINE_integer("rounds", 5, "Timed rounds (one step per method per round).")
    flags.DEFINE_integer("batch_per_domain", 2, "Images per domain (2 domains per step).")
    flags.DEFINE_bool("memory", True, "Also measure peak memory, one child process per method.")
    flags.DEFINE_bool("times", True, "Measure step times (all methods in this process).")
    flags.DEFINE_string("output_json", None, "Write the results here as JSON.")
    flags.DEFINE_string(
        "child", None, "Internal: run one 'config:{build_model options as JSON}' in this process and print JSON."
    )


def _main(argv):
    del argv
    FLAGS = flags.FLAGS
    if FLAGS.child:
        config, options = FLAGS.child.split(":", 1)
        run_child(config, json.loads(options), FLAGS.batch_per_domain)
        return
    unknown = sorted(set(FLAGS.configs) - set(CONFIGS))
    if unknown:
        raise app.UsageError(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    benchmark(FLAGS.configs, FLAGS.rounds, FLAGS.batch_per_domain, FLAGS.memory, FLAGS.times, FLAGS.output_json)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _define_flags()
    app.run(_main, argv)


if __name__ == "__main__":
    main()
