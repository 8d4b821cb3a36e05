"""The evidence study of docs/RESULTS.md: does memory-guided meta-learning generalise better here?

Trains every method of the paper's comparison (Table 7's rows: aggregate training with and without the memory,
episodic training with the memory and without second-order meta-learning, MLDG, MGML first and second order)
and the loss and memory-update ablations (Tables 5 and 6) on the three synthetic source styles, several seeds
each, and evaluates each run on the three unseen target styles (configs/study.cfg). Each run is one
``python -m mgml_tf.train`` process; ``--workers`` run at once with ``--threads`` threads each (on 2 cores two
single-threaded small-network runs use the machine better than one two-threaded run).

    python tools/study.py --out_dir=/tmp/mgml_study                       # everything, then the report
    python tools/study.py --out_dir=/tmp/mgml_study --groups=main         # the comparison only
    python tools/study.py --out_dir=/tmp/mgml_study --report_only         # rewrite the report

A run whose ``eval_results.json`` exists is not repeated, so a killed study resumes where it stopped. The
report (``--results_md``, ``--chart``, ``--results_json``) is generated from those files only: the table of
mean and standard deviation over seeds of the mIoU per target, the per-seed values, paired differences against
the baseline, wall times, and the machine. Text outside the generated block of the Markdown file is kept.
"""
import concurrent.futures
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from markdown_blocks import replace_block  # tools/, the script's folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "/tmp/mgml_study", "Where the runs and their logs go.")
flags.DEFINE_string("config", "configs/study.cfg", "Flagfile of every run (relative to the repository).")
flags.DEFINE_integer("seeds", 3, "Seeds per variant (0, 1, ...).")
flags.DEFINE_list("groups", ["main", "table5", "table6", "temperature"], "Which groups of variants to run.")
flags.DEFINE_integer("workers", 2, "Runs at once.")
flags.DEFINE_integer("threads", 1, "TensorFlow threads per run (intra- and inter-op).")
flags.DEFINE_integer("train_steps", None, "Override the config's --train_steps (e.g. a quick smoke study).")
flags.DEFINE_boolean("report_only", False, "Do not train; write the report from the runs that exist.")
flags.DEFINE_string("results_md", "docs/RESULTS.md", "Report (the generated block is replaced).")
flags.DEFINE_string("results_json", "docs/results/study.json", "Every number of the report.")
flags.DEFINE_string("chart", "docs/results/study.png", "Bar chart.")

# name -> (group, what it is, extra flags). The default of every option not named is the paper's.
VARIANTS = {
    "baseline": ("main", "Agg., no memory (Table 7 row 1)", ["--method=baseline"]),
    "memory_agg": ("main", "Agg. + memory (Table 7 row 2)", ["--method=memory_agg"]),
    "mldg": ("main", "Episodic + M.L., no memory (MLDG, Table 7 row 3)", ["--method=mldg", "--meta_order=2"]),
    "mgml_episodic": ("main", "Episodic + memory, no M.L. (Table 7 row 4)", ["--method=mgml", "--meta_order=0"]),
    "mgml_first_order": ("main", "MGML, first-order meta-gradient (the reference code)",
                         ["--method=mgml", "--meta_order=1"]),
    "mgml": ("main", "MGML, second order (the paper; Table 7 row 5)", ["--method=mgml", "--meta_order=2"]),
    "mgml_no_cohesion": ("table5", "MGML without L_coh", ["--method=mgml", "--nouse_cohesion"]),
    "mgml_no_divergence": ("table5", "MGML without L_div", ["--method=mgml", "--nouse_divergence"]),
    "mgml_no_coh_no_div": ("table5", "MGML without L_coh and L_div",
                           ["--method=mgml", "--nouse_cohesion", "--nouse_divergence"]),
    "mgml_meta_test_m_hat": ("table6", "meta-test reads M_hat (no re-update; Table 6 row 1)",
                             ["--method=mgml", "--meta_test_memory=m_hat"]),
    "mgml_freeze_none": ("table6", "M' with nothing frozen (Table 6 row 2)",
                         ["--method=mgml", "--memory_prime_freeze=none"]),
    "mgml_freeze_encoder_and_update": ("table6", "M' with E and U frozen (Table 6 row 4)",
                                       ["--method=mgml", "--memory_prime_freeze=encoder_and_update"]),
    "mgml_temperature_0.1": ("temperature", "MGML, memory read temperature 0.1 (paper: 1)",
                             ["--method=mgml", "--memory_temperature=0.1"]),
}
# The full-method row each group's table repeats (Tables 5 and 6 list the full method as one of their rows).
REFERENCE_ROW = "mgml"


def run_dir(name, seed):
    return os.path.join(FLAGS.out_dir, "runs", name, f"seed{seed}")


def train_one(name, seed):
    """Trains one variant with one seed (unless done); returns its record."""
    model_dir = run_dir(name, seed)
    result = os.path.join(model_dir, "eval_results.json")
    log_path = os.path.join(FLAGS.out_dir, "logs", f"{name}_seed{seed}.log")
    timing = os.path.join(FLAGS.out_dir, "logs", f"{name}_seed{seed}.time.json")
    if not os.path.exists(result):
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        cmd = [sys.executable, "-m", "mgml_tf.train", f"--flagfile={FLAGS.config}", f"--model_dir={model_dir}",
               f"--seed={seed}", *VARIANTS[name][2]]
        if FLAGS.train_steps:
            cmd.append(f"--train_steps={FLAGS.train_steps}")
        env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(FLAGS.threads),
                   TF_NUM_INTEROP_THREADS=str(FLAGS.threads), TF_CPP_MIN_LOG_LEVEL="2")
        start, cpu0 = time.time(), os.times()
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        cpu1 = os.times()
        if proc.returncode != 0:
            raise RuntimeError(f"{name} seed {seed} failed (exit {proc.returncode}); see {log_path}")
        with open(timing, "w") as f:  # children's CPU time is only accounted per finished child: approximate
            json.dump({"wall_s": time.time() - start, "command": " ".join(cmd),
                       "cpu_s_all_children_delta": (cpu1.children_user + cpu1.children_system)
                       - (cpu0.children_user + cpu0.children_system)}, f)
        print(f"{datetime.datetime.now():%H:%M:%S} done {name} seed {seed} in {time.time() - start:.0f} s",
              flush=True)
    return load_run(name, seed)


def load_run(name, seed):
    path = os.path.join(run_dir(name, seed), "eval_results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    timing_path = os.path.join(FLAGS.out_dir, "logs", f"{name}_seed{seed}.time.json")
    wall = None
    if os.path.exists(timing_path):
        with open(timing_path) as f:
            wall = json.load(f)["wall_s"]
    return {"name": name, "seed": seed, "wall_s": wall,
            "mIoU": {target: r["mIoU"] for target, r in results.items()},
            "IoU": {target: r["IoU"] for target, r in results.items()},
            "step": next(iter(results.values()))["step"]}


def selected_variants():
    return [name for name, (group, _, _) in VARIANTS.items() if group in FLAGS.groups]


def summarize(records):
    """Mean and sample standard deviation over seeds, per variant and target, and of the target average."""
    by_variant = {}
    for r in records:
        by_variant.setdefault(r["name"], []).append(r)
    summary = {}
    for name, runs in by_variant.items():
        runs.sort(key=lambda r: r["seed"])
        targets = list(runs[0]["mIoU"])
        values = {t: [r["mIoU"][t] for r in runs] for t in targets}
        values["average"] = [float(np.mean([r["mIoU"][t] for t in targets])) for r in runs]
        summary[name] = {
            "group": VARIANTS[name][0], "description": VARIANTS[name][1], "flags": VARIANTS[name][2],
            "seeds": [r["seed"] for r in runs],
            "per_seed": values,
            "mean": {k: float(np.mean(v)) for k, v in values.items()},
            "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else None for k, v in values.items()},
            "wall_s": [r["wall_s"] for r in runs],
        }
    if "baseline" in summary:
        base = dict(zip(summary["baseline"]["seeds"], summary["baseline"]["per_seed"]["average"]))
        for name, s in summary.items():
            pairs = [(v, base[seed]) for seed, v in zip(s["seeds"], s["per_seed"]["average"]) if seed in base]
            diffs = [a - b for a, b in pairs]
            s["vs_baseline_same_seed"] = {"differences": diffs,
                                          "mean": float(np.mean(diffs)) if diffs else None,
                                          "wins": int(sum(d > 0 for d in diffs))}
    return summary


def short(target):
    return target.split(":")[-1]


def fmt(mean, std):
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def markdown(summary, meta):
    names = [n for n in VARIANTS if n in summary]
    targets = [k for k in next(iter(summary.values()))["mean"] if k != "average"]
    lines = [
        f"Generated by `{meta['command']}` on {meta['date']} ({meta['machine']}). "
        f"{meta['num_runs']} runs, {meta['train_steps']} steps each; summed wall time of the runs "
        f"{meta['run_wall_s_sum'] / 60:.0f} min, {meta['workers']} at once. mIoU in percent on the 19 classes, "
        "mean ± sample standard deviation over seeds.", ""]
    groups = {"main": "Comparison of methods (Table 7's rows, plus first-order MGML)",
              "table5": "Loss ablation (Table 5)", "table6": "Memory update in the meta-test step (Table 6)",
              "temperature": "Memory read temperature (not in the paper)"}
    for group, title in groups.items():
        rows = [n for n in names if summary[n]["group"] == group]
        if not rows:
            continue
        if group != "main" and REFERENCE_ROW in summary:
            rows = [REFERENCE_ROW] + rows
        lines += [f"### {title}", "",
                  "| variant | " + " | ".join(short(t) for t in targets) + " | average | seeds | "
                  "avg − baseline (same seed) |",
                  "|---|" + "---|" * (len(targets) + 3)]
        for n in rows:
            s = summary[n]
            vs = s.get("vs_baseline_same_seed")
            vs_text = "—" if n == "baseline" or not vs or vs["mean"] is None else (
                f"{vs['mean']:+.1f} ({vs['wins']}/{len(vs['differences'])} seeds better)")
            lines.append(f"| `{n}`: {s['description']} | " +
                         " | ".join(fmt(s["mean"][t], s["std"][t]) for t in targets) +
                         f" | **{fmt(s['mean']['average'], s['std']['average'])}** | {len(s['seeds'])} | "
                         f"{vs_text} |")
        lines.append("")
    width = max(max(summary[n]["seeds"]) + 1 for n in names)
    lines += ["Per seed (average over the targets):", "",
              "| variant | " + " | ".join(f"seed {i}" for i in range(width)) + " | minutes per run |",
              "|---|" + "---|" * (width + 1)]
    for n in names:
        s = summary[n]
        walls = [w for w in s["wall_s"] if w]
        minutes = f"{np.mean(walls) / 60:.1f}" if walls else "—"
        per_seed = dict(zip(s["seeds"], s["per_seed"]["average"]))
        lines.append(f"| `{n}` | " + " | ".join(f"{per_seed[i]:.1f}" if i in per_seed else "—" for i in range(width))
                     + f" | {minutes} |")
    lines.append("")
    return "\n".join(lines)


def chart(summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in VARIANTS if n in summary]
    keys = list(next(iter(summary.values()))["mean"])
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(names)), 4.2))
    width = 0.8 / len(keys)
    x = np.arange(len(names))
    for i, key in enumerate(keys):
        means = [summary[n]["mean"][key] for n in names]
        stds = [summary[n]["std"][key] or 0.0 for n in names]
        ax.bar(x + (i - (len(keys) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=short(key))
        for j, n in enumerate(names):  # every seed as a dot
            vals = summary[n]["per_seed"][key]
            ax.plot(np.full(len(vals), x[j] + (i - (len(keys) - 1) / 2) * width), vals, "k.", markersize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mIoU on unseen target (%)")
    ax.set_title("Synthetic sources -> unseen target styles (mean ± std over seeds; dots: seeds)")
    ax.legend(fontsize=8, ncol=len(keys))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import tensorflow as tf
    import keras
    return (f"{os.cpu_count()} x {cpu}, no GPU, Python {platform.python_version()}, TensorFlow {tf.__version__}, "
            f"Keras {keras.__version__}")


def write_report(records, started):
    summary = summarize([r for r in records if r is not None])
    if not summary:
        print("no finished runs to report")
        return
    walls = [w for s in summary.values() for w in s["wall_s"] if w]
    meta = {"command": "python tools/study.py " + " ".join(sys.argv[1:]),
            "date": f"{datetime.date.today()}", "machine": machine(),
            "num_runs": sum(len(s["seeds"]) for s in summary.values()),
            "train_steps": sorted({r["step"] for r in records if r}),
            "run_wall_s_sum": float(sum(walls)), "workers": FLAGS.workers,
            "study_wall_s_this_invocation": time.time() - started}
    meta["train_steps"] = ", ".join(str(s) for s in meta["train_steps"])
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.results_json)), exist_ok=True)
    with open(FLAGS.results_json, "w") as f:
        json.dump({"meta": meta, "variants": summary}, f, indent=1)
    chart(summary, FLAGS.chart)
    replace_block(FLAGS.results_md, "<!-- generated by tools/study.py: begin -->",
                  "<!-- generated by tools/study.py: end -->", markdown(summary, meta) + "\n",
                  new_file_text="# Results\n")
    print(f"wrote {FLAGS.results_md}, {FLAGS.results_json}, {FLAGS.chart}")


def main(argv):
    del argv
    started = time.time()
    os.chdir(REPO)
    # The comparison first, every seed; then the ablations seed by seed, so that a study stopped early has
    # every variant with the same number of seeds.
    names = selected_variants()
    jobs = [(n, seed) for seed in range(FLAGS.seeds) for n in names if VARIANTS[n][0] == "main"]
    jobs += [(n, seed) for seed in range(FLAGS.seeds) for n in names if VARIANTS[n][0] != "main"]
    if not FLAGS.report_only:
        # The synthetic suite is generated by the first run; start it alone so parallel runs do not race.
        first = train_one(*jobs[0])
        failures = []
        with concurrent.futures.ThreadPoolExecutor(FLAGS.workers) as pool:
            futures = {pool.submit(train_one, *job): job for job in jobs[1:]}
            for future in concurrent.futures.as_completed(futures):
                try:
                    future.result()
                except RuntimeError as e:
                    failures.append(str(e))
                    print(e, flush=True)
        del first
        if failures:
            print(f"{len(failures)} runs failed; re-run the same command to retry them", flush=True)
    records = [load_run(name, seed) for name in VARIANTS for seed in range(FLAGS.seeds)]
    write_report(records, started)


if __name__ == "__main__":
    app.run(main)
