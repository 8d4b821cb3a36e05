"""Foundation (keras-hub ViT) backbones against the built-in ResNet-50: train step time, peak memory, parameters.

The ``foundation`` section of ``tools.benchmark`` (run it there: ``python -m tools.benchmark
--sections=foundation``; it records to docs/benchmarks/foundation.json and renders its own block of
docs/BENCHMARKS.md). What it measures, at one crop size for all (``size``, 224 by default), one image per
domain and two source domains (an episode: meta-train batch 1, meta-test batch 1; ``baseline`` steps on both
as one batch of 2), DeepLabV3+ with 256 feature channels, 19 classes, random weights everywhere:

- the ViTs: the architectures of the keras-hub presets ``dinov2_small`` (12 layers, width 384, 6 heads) and
  ``dinov2_base`` (12 layers, width 768, 12 heads), randomly initialised and saved as local presets in a
  temporary directory (by a child process, so that this one stays small for the memory children) and loaded
  by path, as ``--backbone=DIR`` loads them: no download, no network;
- each ViT in every tuning (``full``, ``frozen``, ``lora`` rank 8, ``adapter`` 100 tokens of rank 16) and
  every method (``mgml`` second and first order, ``baseline``), and ResNet-50 in every method; ``REDUCED``
  limits some ViTs to some cells (``full_matrix`` runs them all);
- step time: every configuration built in this process and traced by its first step, then ``warmup - 1``
  more untimed steps each (after all are traced: the first call of a step after other functions were traced
  takes a large part of its trace time again), then ``rounds`` interleaved rounds (``tools.benchmark.interleaved``:
  every round steps each configuration once, in a rotating order), so load changes hit all alike; the
  median, and the ratio to ResNet-50 with the same method (``tools.benchmark.ratio_stats``: ratio of
  medians, per-round ratios, bootstrap interval);
- peak memory: each configuration alone in a child process (``python -m tools.benchmark_foundation
  --child=...``), ``memory_steps`` steps: its peak resident set size (``VmHWM`` of /proc/self/status; also its
  ``ru_maxrss``, which Linux carries over from the parent across ``exec``, so it reads the parent's peak
  where that is the larger) and the growth over its size before the first step. Children run first, while
  this process is small;
- parameters: each backbone in each tuning built with method ``mgml`` (no steps): the backbone's trainable
  parameters, the whole model's trainable ones and all of its parameters (``tools.count_params.count``).

``run`` does the work and returns the section's record; ``render`` writes its Markdown (without the heading
and the command/machine header, which ``tools.benchmark`` adds).
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The keras-hub presets' architectures (keras_hub.models.DINOV2Backbone arguments), built with random weights.
ARCHITECTURES = {
    "dinov2_small": dict(hidden_dim=384, num_heads=6, intermediate_dim=1536),
    "dinov2_base": dict(hidden_dim=768, num_heads=12, intermediate_dim=3072),
}
COMMON = dict(patch_size=14, num_layers=12, image_shape=(224, 224, 3), position_embedding_shape=(518, 518, 3))
TUNINGS = {
    "full": {},
    "frozen": {},
    "lora": dict(lora_rank=8),
    "adapter": dict(adapter_tokens=100, adapter_rank=16),
}
METHODS = {
    "mgml 2nd order": dict(method="mgml", meta_order=2),
    "mgml 1st order": dict(method="mgml", meta_order=1),
    "baseline": dict(method="baseline"),
}
HEAD = dict(head="deeplabv3plus", num_classes=19, feature_channels=256)
REFERENCE = "resnet50"
# ViT -> (tunings, methods) it is limited to unless full_matrix. All 27 cells take about 40 minutes of this
# 2-core machine: the 19 kept took 26 and 29 minutes in two runs, a base-ViT cell 1.3-2.7 minutes (its memory
# child, its trace here, 17-43 s, and its first call after the other traces, 10-28 s, and its timed steps); the
# base ViT is kept where it answers how the second-order cost grows with the backbone: mgml at both orders,
# full and LoRA tuning.
REDUCED = {"dinov2_base": (("full", "lora"), ("mgml 2nd order", "mgml 1st order"))}
REDUCED_REASON = (
    "the full matrix (27 cells) takes about 40 minutes of this 2-core machine, over the section's 25-minute "
    "budget; the base ViT keeps the cells that show how the second-order cost grows with the backbone "
    "(mgml at both orders, full and LoRA tuning)"
)


def key(backbone, tuning, method):
    return f"{backbone} / {tuning} / {method}"


# ------------------------------------------------------------------------------------------------ models
def write_presets(root, vits, seed=0):
    """Saves each of ``vits`` (names of ``ARCHITECTURES``) with random weights as a local keras-hub preset under
    ``root``; returns name -> directory."""
    import keras
    from keras_hub.models import DINOV2Backbone

    paths = {}
    for name in vits:
        keras.utils.set_random_seed(seed)
        hub = DINOV2Backbone(**COMMON, **ARCHITECTURES[name])
        paths[name] = os.path.join(root, name)
        hub.save_to_preset(paths[name])
        del hub
    return paths


def _write_presets_in_child(root, vits):
    """``write_presets`` in a child process (building a base ViT would leave this process's peak at its size)."""
    subprocess.run(
        [sys.executable, "-m", "tools.benchmark_foundation", f"--write_presets={root}", f"--vits={','.join(vits)}"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return {name: os.path.join(root, name) for name in vits}


def architecture(path):
    """The keras-hub config of a local preset directory (patch size, depth, width, ...), without dtypes."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    keys = ("patch_size", "num_layers", "hidden_dim", "num_heads", "intermediate_dim", "num_register_tokens")
    return {"class": config["class_name"], **{k: config["config"][k] for k in keys if k in config["config"]}}


def cells(vits, tunings, methods, reference, full_matrix=False):
    """``(kept, left_out)``: lists of ``(backbone, tuning, method)``; the reference trains fully."""
    kept, left_out = [], []
    for vit in vits:
        allowed_tunings, allowed_methods = REDUCED.get(vit, (tunings, methods))
        for tuning in tunings:
            for method in methods:
                cell = (vit, tuning, method)
                (kept if full_matrix or (tuning in allowed_tunings and method in allowed_methods) else left_out).append(
                    cell
                )
    kept += [(reference, "full", method) for method in methods]
    return kept, left_out


def build_options(cell, paths, head):
    """``build_model`` options of a cell (``paths``: ViT name -> preset directory)."""
    backbone, tuning, method = cell
    options = {**head, **METHODS[method], "dropout": 0.0}
    if backbone in paths:
        options.update(backbone=paths[backbone], backbone_tuning=tuning, **TUNINGS[tuning])
    else:
        options.update(backbone=backbone)
    return options


def _build(options, compile=True):
    import keras

    import mgml_tf

    keras.utils.set_random_seed(0)
    return mgml_tf.build_model(**options, compile=compile)


def episode(size, num_classes, batch_per_domain=1, seed=0):
    """``((meta-train images, labels), (meta-test images, labels))``, ``batch_per_domain`` images each."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def half():
        images = rng.uniform(0, 255, size=(batch_per_domain, size, size, 3)).astype(np.float32)
        labels = rng.integers(0, num_classes, size=(batch_per_domain, size, size)).astype(np.int32)
        return tf.constant(images), tf.constant(labels)

    return half(), half()


def _compiled_step(model):
    import tensorflow as tf

    return tf.function(model.train_step, reduce_retracing=True)


def _one_line(e):
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


# ------------------------------------------------------------------------------------------------ memory
def run_child(spec):
    """``spec['steps']`` steps of one configuration in this process; prints its memory (and step times) as JSON."""
    import resource

    from tools.benchmark_train_step import _status_mb

    model = _build(spec["options"])
    step = _compiled_step(model)
    data = episode(spec["size"], spec["options"]["num_classes"], spec["batch_per_domain"])
    before = _status_mb("VmRSS")
    times, loss, fault = [], None, None
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        logs = step(data)
        loss, fault = float(logs["loss"]), float(logs["step_fault"])
        times.append(time.perf_counter() - t0)
    out = {
        "rss_before_mb": before,
        "peak_rss_mb": _status_mb("VmHWM"),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "step_s": times,
        "loss": loss,
        "step_fault": fault,
    }
    print(json.dumps(out))


def measure_memory(options, size, batch_per_domain, steps):
    """Peak memory of one configuration (``build_model`` options) alone in a child process: the child's JSON,
    or ``{"failed": message}``."""
    spec = dict(options=options, size=size, batch_per_domain=batch_per_domain, steps=steps)
    out = subprocess.run(
        [sys.executable, "-m", "tools.benchmark_foundation", f"--child={json.dumps(spec)}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        tail = " ".join(out.stderr.strip().splitlines()[-3:])
        return {"failed": f"exit {out.returncode}: {' '.join(tail.split())[:300]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- parameters
def count_parameters(backbones, tunings, paths, head):
    """backbone -> tuning -> ``{backbone_trainable, model_trainable, model_total}`` of each built with method
    ``mgml`` (the reference only in ``full``)."""
    import gc

    import keras

    from tools import count_params

    out = {}
    for backbone in backbones:
        for tuning in tunings if backbone in paths else ("full",):
            model = _build(build_options((backbone, tuning, "mgml 2nd order"), paths, head), compile=False)
            trainable, non_trainable = count_params.count(model)
            out.setdefault(backbone, {})[tuning] = {
                "backbone_trainable": count_params.count(model.backbone)[0],
                "model_trainable": trainable,
                "model_total": trainable + non_trainable,
            }
            print(f"[foundation] parameters {backbone} / {tuning}: {out[backbone][tuning]}", flush=True)
            del model
            gc.collect()
    keras.backend.clear_session()
    return out


# -------------------------------------------------------------------------------------------------- run
def run(
    vits=tuple(ARCHITECTURES),
    size=224,
    rounds=5,
    warmup=2,
    memory=True,
    memory_steps=3,
    memory_jobs=1,
    full_matrix=False,
    bootstrap=2000,
    presets=None,
    reference=REFERENCE,
    head=HEAD,
    tunings=tuple(TUNINGS),
    methods=tuple(METHODS),
):
    """The foundation section's record (see the module docstring). ``presets`` (name -> local preset directory)
    replaces the ViTs of ``ARCHITECTURES``: then ``vits`` name them (the tests pass a tiny one). ``memory_jobs``
    memory children run at a time (peak memory is the child's own; the tests run two, to be quick)."""
    from tools.benchmark import _summary, interleaved, ratio_stats

    batch_per_domain = 1
    tmp = None
    if presets is None:
        tmp = tempfile.mkdtemp(prefix="mgml_foundation_")
        t0 = time.perf_counter()
        presets = _write_presets_in_child(tmp, vits)
        print(f"[foundation] random presets {list(vits)} written in {time.perf_counter() - t0:.0f} s", flush=True)
    paths = {name: presets[name] for name in vits}
    kept, left_out = cells(vits, tunings, methods, reference, full_matrix)
    result = {
        "size": size,
        "batch_per_domain": batch_per_domain,
        "source_domains": 2,
        "rounds": rounds,
        "warmup": warmup,
        "memory_steps": memory_steps if memory else 0,
        "memory_jobs": memory_jobs,
        "head": dict(head),
        "reference": reference,
        "tunings": {t: TUNINGS[t] for t in tunings},
        "methods": {m: METHODS[m] for m in methods},
        "backbones": {name: architecture(path) for name, path in paths.items()},
        "left_out": [dict(zip(("backbone", "tuning", "method"), c)) for c in left_out],
        "left_out_reason": REDUCED_REASON if left_out else None,
        "configs": {key(*c): dict(zip(("backbone", "tuning", "method"), c)) for c in kept},
    }
    try:
        if memory:  # children first, while this process is still small

            def child(cell):
                t0 = time.perf_counter()
                mem = measure_memory(build_options(cell, paths, head), size, batch_per_domain, memory_steps)
                mem["process_s"] = time.perf_counter() - t0
                print(f"[foundation] memory {key(*cell)}: {mem}", flush=True)
                return mem

            with concurrent.futures.ThreadPoolExecutor(memory_jobs) as pool:
                for cell, mem in zip(kept, pool.map(child, kept)):
                    result["configs"][key(*cell)]["memory"] = mem
        result["params"] = count_parameters([*vits, reference], tunings, paths, head)

        data = episode(size, head["num_classes"], batch_per_domain)
        calls, last = {}, {}
        for cell in kept:
            name, entry = key(*cell), result["configs"][key(*cell)]
            try:
                model = _build(build_options(cell, paths, head))
                step = _compiled_step(model)
                t0 = time.perf_counter()
                float(step(data)["loss"])
                entry["warmup_s"] = [time.perf_counter() - t0]
            except Exception as e:  # noqa: BLE001  (report, e.g. a graph rewrite that fails, and go on)
                entry["failed"] = _one_line(e)
                print(f"[foundation] {name} fails: {entry['failed']}", flush=True)
                continue
            print(f"[foundation] first step (trace) {name}: {entry['warmup_s'][0]:.1f} s", flush=True)

            def call(name=name, step=step):
                logs = step(data)
                last[name] = {"loss": float(logs["loss"]), "step_fault": float(logs["step_fault"])}

            calls[name] = call  # the step holds its model until the rounds end
        # The rest of the warm-up once every step is traced: the first call of a step after other functions
        # were traced in the process takes a large part of its trace time again (seen here: 10-30 s for the
        # ViTs; the Python function is not retraced), so warming each up right after its own trace would
        # leave that in the first timed round.
        for _ in range(warmup - 1):
            for name, call in calls.items():
                t0 = time.perf_counter()
                call()
                result["configs"][name]["warmup_s"].append(time.perf_counter() - t0)
        print(
            "[foundation] warm-up: " + ", ".join(f"{k} {result['configs'][k]['warmup_s']}" for k in calls), flush=True
        )

        def progress(r, times):
            print(
                f"[foundation] round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                flush=True,
            )

        times = interleaved(calls, rounds, progress)
        for name, entry in result["configs"].items():
            if name in times:
                entry["step"] = {**_summary(times[name]), "last": last[name]}
                ref = key(reference, "full", entry["method"])
                if ref in times:
                    entry["ratio_to_reference"] = ratio_stats(times[name], times[ref], bootstrap)
        result["second_over_first"] = _second_over_first(result, times, ratio_stats, bootstrap)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _second_over_first(result, times, ratio_stats, bootstrap):
    """mgml 2nd / 1st order per backbone and tuning where both ran: time (paired rounds) and peak memory."""
    out = {}
    for entry in result["configs"].values():
        if entry["method"] != "mgml 2nd order":
            continue
        second = key(entry["backbone"], entry["tuning"], "mgml 2nd order")
        first = key(entry["backbone"], entry["tuning"], "mgml 1st order")
        if first not in result["configs"]:
            continue
        row = {"backbone": entry["backbone"], "tuning": entry["tuning"]}
        if second in times and first in times:
            row["time"] = ratio_stats(times[second], times[first], bootstrap)
        a, b = result["configs"][second].get("memory", {}), result["configs"][first].get("memory", {})
        if "peak_rss_mb" in a and "peak_rss_mb" in b:
            row["peak_rss_ratio"] = a["peak_rss_mb"] / b["peak_rss_mb"]
            row["growth_ratio"] = (a["peak_rss_mb"] - a["rss_before_mb"]) / (b["peak_rss_mb"] - b["rss_before_mb"])
        out[f"{entry['backbone']} / {entry['tuning']}"] = row
    return out


# ---------------------------------------------------------------------------------------------- markdown
def _s(seconds):
    return f"{seconds:.2f}"


def _mb(entry):
    mem = entry.get("memory", {})
    if "peak_rss_mb" not in mem:
        return "- | -"
    return f"{mem['peak_rss_mb']:.0f} | {mem['peak_rss_mb'] - mem['rss_before_mb']:.0f}"


def _ratio(r):
    return f"{r['ratio_of_medians']:.2f} ({r['min_per_round']:.2f}-{r['max_per_round']:.2f})"


def render(sec):
    """The section's Markdown lines after its heading and header (``tools.benchmark`` adds those)."""
    ref, head = sec["reference"], sec["head"]
    vits = ", ".join(
        f"`{name}` ({a['num_layers']} layers, width {a['hidden_dim']}, {a['num_heads']} heads, MLP "
        f"{a['intermediate_dim']}, patch {a['patch_size']})"
        for name, a in sec["backbones"].items()
    )
    tunings = ", ".join(
        f"`{t}`" + (f" ({', '.join(f'{k} {v}' for k, v in o.items())})" if o else "") for t, o in sec["tunings"].items()
    )
    size = sec["size"]
    lines = [
        "Generated from `docs/benchmarks/foundation.json` (`python -m tools.benchmark --render_only "
        "--sections=foundation` rewrites this block from it). `tools/benchmark_foundation.py`: keras-hub DINOv2 "
        f"ViTs of the architectures of the presets {vits}, and the built-in `{ref}` (output stride 16), all "
        "with random weights (the ViTs saved as local presets and loaded by path: no download); "
        f"{head['head']} head with {head['feature_channels']} feature channels, {head['num_classes']} classes, "
        f"dropout 0. {size}x{size} crops, {sec['batch_per_domain']} image per domain, {sec['source_domains']} "
        f"source domains: an episode is a meta-train batch of {sec['batch_per_domain']} and a meta-test batch of "
        f"{sec['batch_per_domain']} (`baseline` steps on both as one batch). ViT tunings: {tunings}.",
        "",
        f"Step time: all configurations in one process, each step a compiled `tf.function` of `train_step`, "
        f"{sec['warmup']} untimed steps each (the first traces: its time is the column `first step`; the others "
        "run once every configuration is traced), then "
        f"{sec['rounds']} interleaved rounds (each round steps every configuration once, rotating the order); "
        f"median (min-max) seconds per step, and the ratio to `{ref}` with the same method (ratio of medians; "
        "per-round ratios min-max). Peak memory: each configuration alone in a child process"
        + (f" ({sec['memory_jobs']} children at a time)" if sec.get("memory_jobs", 1) > 1 else "")
        + f", {sec['memory_steps']} steps, peak resident set size (`VmHWM`) and its growth over the size before "
        "the first step.",
        "",
    ]
    if sec["left_out"]:
        by_backbone = {}
        for c in sec["left_out"]:
            by_backbone.setdefault(c["backbone"], []).append(f"{c['tuning']} / {c['method']}")
        lines += [
            "Left out: "
            + "; ".join(f"`{b}` {', '.join(cs)}" for b, cs in by_backbone.items())
            + f" ({sec['left_out_reason']}).",
            "",
        ]
    lines += [
        f"| backbone | tuning | method | step (s), median (min-max) | x {ref}, same method (per round) | "
        "first step (s) | peak RSS (MB) | growth (MB) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for entry in sec["configs"].values():
        cells = f"| {entry['backbone']} | {entry['tuning']} | {entry['method']} | "
        if "step" in entry:
            st = entry["step"]
            ratio = _ratio(entry["ratio_to_reference"]) if "ratio_to_reference" in entry else "-"
            cells += f"{_s(st['median_s'])} ({_s(st['min_s'])}-{_s(st['max_s'])}) | {ratio} | "
            cells += f"{entry['warmup_s'][0]:.0f} | "
        else:
            cells += f"fails: {entry.get('failed', 'not run')} | - | - | "
        lines.append(cells + _mb(entry) + " |")
    faults = [k for k, e in sec["configs"].items() if e.get("step", {}).get("last", {}).get("step_fault")]
    failed = {k: e["memory"]["failed"] for k, e in sec["configs"].items() if "failed" in e.get("memory", {})}
    diffs = [
        e["memory"]["ru_maxrss_mb"] - e["memory"]["peak_rss_mb"]
        for e in sec["configs"].values()
        if "ru_maxrss_mb" in e.get("memory", {})
    ]
    lines.append("")
    if faults:
        lines += [f"Non-finite last timed step (skipped by the model): {', '.join(faults)}.", ""]
    if failed:
        lines += ["Memory children that failed: " + "; ".join(f"{k}: {m}" for k, m in failed.items()) + ".", ""]
    if diffs:
        lines += [
            "The children's `ru_maxrss` (which Linux carries over from the parent across `exec`, so it can read "
            f"the parent's peak) differs from their `VmHWM` by at most {max(abs(d) for d in diffs):.1f} MB.",
            "",
        ]
    rows = sec.get("second_over_first", {})
    if rows:
        lines += [
            "Second-order over first-order meta-gradients (mgml meta_order 2 / 1, same backbone and tuning): "
            "step time (ratio of medians of the paired rounds, per-round min-max), peak RSS and its growth "
            "during the steps.",
            "",
            "| backbone | tuning | time, 2nd / 1st | peak RSS, 2nd / 1st | growth, 2nd / 1st |",
            "|---|---|---:|---:|---:|",
        ]
        for r in rows.values():
            t = _ratio(r["time"]) if "time" in r else "-"
            mem = f"{r['peak_rss_ratio']:.2f} | {r['growth_ratio']:.2f}" if "peak_rss_ratio" in r else "- | -"
            lines.append(f"| {r['backbone']} | {r['tuning']} | {t} | {mem} |")
        lines.append("")
    lines += [
        "Parameters (`tools/count_params.py`'s count; method `mgml`, so the whole model includes the memory, "
        "the update network U and the memory classifier G; the stored position embeddings of a ViT are never "
        "trainable):",
        "",
        "| backbone | tuning | backbone trainable | model trainable | model total | trainable share |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for backbone, by_tuning in sec["params"].items():
        for tuning, p in by_tuning.items():
            share = 100.0 * p["model_trainable"] / p["model_total"]
            lines.append(
                f"| {backbone} | {tuning} | {p['backbone_trainable']:,} | {p['model_trainable']:,} | "
                f"{p['model_total']:,} | {share:.2f}% |"
            )
    return lines + [""]


# ---------------------------------------------------------------------------------------- command line
def _define_flags():
    flags.DEFINE_string("child", None, "Internal: run one configuration (JSON spec) and print its memory as JSON.")
    flags.DEFINE_string("write_presets", None, "Internal: write the random ViT presets of --vits under this directory.")
    flags.DEFINE_list("vits", list(ARCHITECTURES), "ViT architectures for --write_presets.")


def _main(argv):
    del argv
    FLAGS = flags.FLAGS
    if FLAGS.child:
        run_child(json.loads(FLAGS.child))
    elif FLAGS.write_presets:
        unknown = sorted(set(FLAGS.vits) - set(ARCHITECTURES))
        if unknown:
            raise app.UsageError(f"unknown ViT(s) {unknown}; choose from {list(ARCHITECTURES)}")
        print(json.dumps(write_presets(FLAGS.write_presets, FLAGS.vits)))
    else:
        raise app.UsageError(
            "the foundation benchmark runs as a section of tools.benchmark: python -m tools.benchmark "
            "--sections=foundation; this command line serves its child processes (--child, --write_presets)"
        )


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _define_flags()
    app.run(_main, argv)


if __name__ == "__main__":
    main()
