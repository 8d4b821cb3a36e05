"""The evidence study of docs/RESULTS.md: does memory-guided meta-learning generalise better here?

Every run is one ``python -m mgml_tf.train --flagfile=configs/study.cfg`` process with only the scene family,
the method options and the seed changed. It trains on the three source styles of a synthetic scene family and
is evaluated on held-out images of those source styles (in-domain) and on the three unseen target styles.
Two independent families (``--families``): ``streets`` and ``towns`` (docs/SYNTHETIC.md).

    python tools/study.py --groups=decisive                 # the decisive comparison, 5 seeds, both families
    python tools/study.py --groups=regime --families=streets --seeds=1   # learning curves of the baseline
    python tools/study.py --report_only                     # rewrite the report from the records

Resumable: each finished run leaves a record (``--records_dir``, kept in the repository: per-step in-domain and
target mIoU, per-class IoU, the memory read diagnostics, wall and CPU time, the exact command and commit), and a
run whose record exists with the same command is not repeated, on this machine or another. The report
(``--results_md``'s generated block, ``--results_json``, the plots) is computed from the records only.

The comparisons that decide were fixed before the runs (``DECISIVE``): paired by seed within a family, the
mean difference of the target-average mIoU with a bootstrap 95% interval over seeds.
"""

import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags
from markdown_blocks import replace_block  # tools/, the script's folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "/tmp/mgml_study", "Model directories, logs and the generated scenes.")
flags.DEFINE_string("records_dir", "docs/results/runs", "One JSON record per finished run (in the repository).")
flags.DEFINE_string("config", "configs/study.cfg", "Flagfile of every run (relative to the repository).")
flags.DEFINE_list("families", ["streets", "towns"], "Synthetic scene families.")
flags.DEFINE_integer("seeds", 5, "Seeds per variant (0, 1, ...).")
flags.DEFINE_list("groups", ["decisive"], "Groups of variants to run (see VARIANTS).")
flags.DEFINE_list("variants", None, "Only these variants (default: every variant of --groups).")
flags.DEFINE_integer("workers", 2, "Runs at once.")
flags.DEFINE_integer("threads", 1, "TensorFlow threads per run (intra- and inter-op).")
flags.DEFINE_boolean("report_only", False, "Do not train; write the report from the records.")
flags.DEFINE_string("results_md", "docs/RESULTS.md", "Report (its generated block is replaced).")
flags.DEFINE_string("results_json", "docs/results/study.json", "Every number of the report.")
flags.DEFINE_string("plots_dir", "docs/results", "Where the plots go.")
flags.DEFINE_integer("bootstrap", 10000, "Bootstrap resamples of the seeds for the 95% intervals.")


@dataclasses.dataclass(frozen=True)
class Variant:
    group: str
    description: str
    flags: tuple = ()
    against: str = "mgml"  # what an exploratory variant is compared with, seed by seed (one option changed)


# The default of every option not named is configs/study.cfg's, itself the paper's where the paper sets it.
VARIANTS = {
    # Table 7's rows that decide the paper's claim.
    "baseline": Variant("decisive", "aggregate training, no memory (Table 7 row 1)", ("--method=baseline",)),
    "memory_agg": Variant("decisive", "aggregate training + memory (Table 7 row 2)", ("--method=memory_agg",)),
    "mldg": Variant(
        "decisive", "episodic meta-learning, no memory (MLDG; Table 7 row 3)", ("--method=mldg", "--meta_order=2")
    ),
    "mgml": Variant(
        "decisive",
        "memory-guided meta-learning, second order (the paper; Table 7 row 5)",
        ("--method=mgml", "--meta_order=2"),
    ),
    # The rest of Table 7.
    "mgml_episodic": Variant(
        "table7", "episodic training + memory, no meta-gradient (Table 7 row 4)", ("--method=mgml", "--meta_order=0")
    ),
    "mgml_first_order": Variant(
        "table7", "MGML, first-order meta-gradient (the reference code)", ("--method=mgml", "--meta_order=1")
    ),
    # Why the memory read stays uniform and why meta-learning can fall below aggregate training: one
    # experiment per hypothesis (docs/RESULTS.md).
    "mgml_read_temperature_0.1": Variant(
        "hypotheses",
        "MGML, memory read temperature 0.1 (paper: 1)",
        ("--method=mgml", "--memory_temperature=0.1", "--memory_temperature_on=read"),
    ),
    "mgml_learned_scale": Variant(
        "hypotheses",
        "MGML, learned scale of the read and cohesion logits (init 1)",
        ("--method=mgml", "--memory_score_scale=learned"),
    ),
    "mgml_centred_read": Variant(
        "hypotheses", "MGML, read centred on the mean memory row", ("--method=mgml", "--memory_centering=mean_row")
    ),
    "mgml_learned_scale_centred": Variant(
        "hypotheses",
        "MGML, learned scale and centred read together",
        ("--method=mgml", "--memory_score_scale=learned", "--memory_centering=mean_row"),
    ),
    "mgml_cohesion_0.2": Variant(
        "hypotheses", "MGML, cohesion weight 0.2 (paper: 0.02)", ("--method=mgml", "--cohesion_weight=0.2")
    ),
    "mgml_inner_lr_1": Variant(
        "hypotheses", "MGML, inner learning rate = outer (paper: 1/4)", ("--method=mgml", "--inner_lr_ratio=1.0")
    ),
    "mgml_memory_rewrite_1000": Variant(
        "hypotheses",
        "MGML, memory rewritten from the current encoder every 1000 steps (paper: once, from the untrained encoder)",
        ("--method=mgml", "--memory_rewrite_every=1000"),
    ),
    "mldg_split_only": Variant(
        "hypotheses",
        "MLDG's two forward passes on the domain split, no inner step",
        ("--method=mldg", "--meta_order=0"),
        against="mldg",
    ),
    # Departures from the reference code (docs/REFERENCE.md): the old behaviour, one option at a time.
    "mgml_bn_epsilon_1e-3": Variant(
        "departures", "MGML, BatchNorm epsilon 1e-3 in heads, U and read block", ("--method=mgml", "--bn_epsilon=1e-3")
    ),
    "mgml_bn_statistics_every_pass": Variant(
        "departures", "MGML, BatchNorm statistics from every pass", ("--method=mgml", "--bn_statistics_from=every_pass")
    ),
    "mgml_update_input_raw": Variant(
        "departures", "MGML, update network on raw F (the reference)", ("--method=mgml", "--update_network_input=raw")
    ),
    # Tables 5 and 6.
    "mgml_no_cohesion": Variant("table5", "MGML without L_coh", ("--method=mgml", "--nouse_cohesion")),
    "mgml_no_divergence": Variant("table5", "MGML without L_div", ("--method=mgml", "--nouse_divergence")),
    "mgml_meta_test_m_hat": Variant(
        "table6", "meta-test reads M_hat (Table 6 row 1)", ("--method=mgml", "--meta_test_memory=m_hat")
    ),
    "mgml_freeze_none": Variant(
        "table6", "M' with nothing frozen (Table 6 row 2)", ("--method=mgml", "--memory_prime_freeze=none")
    ),
}
# The regime: learning curves of the baseline over crop size, network width and steps (evaluated every
# REGIME_EVAL_EVERY steps), to choose the smallest setting in which the networks learn.
REGIME_STEPS = 6000
REGIME_EVAL_EVERY = 1000
for _crop, _width in ((96, 64), (96, 32), (128, 64)):
    VARIANTS[f"regime_crop{_crop}_width{_width}"] = Variant(
        "regime",
        f"baseline, crop {_crop}, {_width} channels, {REGIME_STEPS} steps",
        (
            "--method=baseline",
            f"--crop_size={_crop}",
            f"--feature_channels={_width}",
            f"--decoder_channels={_width}",
            f"--train_steps={REGIME_STEPS}",
            f"--eval_every={REGIME_EVAL_EVERY}",
        ),
    )

# Fixed before the runs: (variant, against, the question it answers). Reported first, in this order.
DECISIVE = (
    ("mgml", "baseline", "Does MGML generalise better than aggregate training?"),
    ("mgml", "mldg", "Does the memory help meta-learning (MGML against MLDG, the same without memory)?"),
    ("memory_agg", "baseline", "Does the memory help aggregate training?"),
)
SECONDARY = (("mldg", "baseline", "Does episodic meta-learning without memory help?"),)
# Exploratory: each variant against the one it changes (Variant.against), same seeds; fewer seeds, no verdict.
EXPLORATORY_GROUPS = ("hypotheses", "departures", "table7", "table5", "table6")


# ------------------------------------------------------------------------------------------------ runs
def _command(family, name, seed, model_dir):
    return [
        sys.executable,
        "-m",
        "mgml_tf.train",
        f"--flagfile={FLAGS.config}",
        f"--synthetic_family={family}",
        f"--synthetic_root={os.path.join(FLAGS.out_dir, 'data', family)}",
        f"--model_dir={model_dir}",
        f"--seed={seed}",
        *VARIANTS[name].flags,
    ]


def _fingerprint(command):
    """What makes two runs the same: the flags (the flagfile's text included), not the paths."""
    parts = [c for c in command[3:] if not c.startswith(("--model_dir=", "--synthetic_root="))]
    text = "\n".join(parts) + "\n" + _flagfile_text(FLAGS.config)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flagfile_text(path, seen=()):
    """The flagfile with every nested ``--flagfile`` inlined (so a changed nested config changes the print)."""
    out = []
    with open(os.path.join(REPO, path)) as f:
        for line in f:
            line = line.strip()
            if line.startswith("--flagfile=") and line not in seen:
                out.append(_flagfile_text(line.split("=", 1)[1], seen + (line,)))
            elif line and not line.startswith("#"):
                out.append(line)
    return "\n".join(out)


def record_path(family, name, seed):
    return os.path.join(REPO, FLAGS.records_dir, family, name, f"seed{seed}.json")


def load_record(family, name, seed, command=None):
    path = record_path(family, name, seed)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        record = json.load(f)
    if command is not None and record.get("fingerprint") != _fingerprint(command):
        return None  # made with other flags: stale
    return record


def _git_commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _model_dir(family, name, seed):
    return os.path.join(FLAGS.out_dir, "runs", family, name, f"seed{seed}")


def _existing_record(family, name, seed):
    """The run's record if one exists with the same flags (fingerprint), else None."""
    return load_record(family, name, seed, _command(family, name, seed, _model_dir(family, name, seed)))


def train_one(family, name, seed):
    """Trains one variant with one seed unless its record exists; returns the record."""
    model_dir = _model_dir(family, name, seed)
    command = _command(family, name, seed, model_dir)
    record = load_record(family, name, seed, command)
    if record is not None:
        return record
    log_path = os.path.join(FLAGS.out_dir, "logs", family, f"{name}_seed{seed}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    if os.path.exists(os.path.join(model_dir, "eval_results.json")):  # finished before under other flags
        shutil.rmtree(model_dir)
    env = dict(
        os.environ,
        TF_NUM_INTRAOP_THREADS=str(FLAGS.threads),
        TF_NUM_INTEROP_THREADS=str(FLAGS.threads),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    start = time.time()
    with open(log_path, "a") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(
            f"{family}/{name} seed {seed} failed (exit {os.waitstatus_to_exitcode(status)}); see {log_path}"
        )
    wall, cpu = time.time() - start, usage.ru_utime + usage.ru_stime
    record = {
        "family": family,
        "variant": name,
        "seed": seed,
        "fingerprint": _fingerprint(command),
        "command": " ".join(command[1:]).replace(FLAGS.out_dir, "$OUT"),
        "commit": _git_commit(),
        "date": f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "threads": FLAGS.threads,
    }
    with open(os.path.join(model_dir, "eval_history.jsonl")) as f:
        record["history"] = [json.loads(line) for line in f if line.strip()]
    if "--method=baseline" not in VARIANTS[name].flags and "--method=mldg" not in VARIANTS[name].flags:
        record["memory_read"] = memory_read_diagnostics(model_dir)
    path = record_path(family, name, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)
    print(
        f"{datetime.datetime.now():%H:%M:%S} done {family}/{name} seed {seed} in {wall / 60:.1f} min "
        f"({cpu / 60:.1f} CPU min)",
        flush=True,
    )
    return record


def memory_read_diagnostics(model_dir):
    """tools/memory_diagnostics.py on every evaluated domain of a run with a memory."""
    out = os.path.join(model_dir, "memory_diagnostics.json")
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(FLAGS.threads), TF_NUM_INTEROP_THREADS=str(FLAGS.threads))
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "memory_diagnostics.py"),
            f"--model_dirs={model_dir}",
            f"--results_json={out}",
        ],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with open(out) as f:
        run = json.load(f)["runs"][0]
    return {"memory": run["memory"], "domains": run["targets"]}


# ------------------------------------------------------------------------------------------- analysis
def is_in_domain(domain_label):
    """Held-out images of a source style are written to ``<style>_val`` (mgml_tf.training.data)."""
    return domain_label.rsplit(":", 1)[-1].endswith("_val")


def final_scores(record):
    """``{"target": mean mIoU over target domains, "in_domain": mean over held-out source images, per domain}``."""
    results = record["history"][-1]["results"]
    target = [r["mIoU"] for k, r in results.items() if not is_in_domain(k)]
    in_domain = [r["mIoU"] for k, r in results.items() if is_in_domain(k)]
    return {
        "target": float(np.mean(target)),
        "in_domain": float(np.mean(in_domain)) if in_domain else None,
        "domains": {k: r["mIoU"] for k, r in results.items()},
        "step": record["history"][-1]["step"],
    }


def bootstrap_interval(values, resamples, seed=0):
    """Percentile bootstrap 95% interval of the mean of ``values`` (resampling its entries); None under 3
    values, where resampling gives no interval worth the name."""
    values = np.asarray(values, float)
    if len(values) < 3:
        return None
    idx = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    low, high = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
    return [float(low), float(high)]


def paired(records, family, a, b, key="target"):
    """Differences ``a - b`` of the same seed in one family, with their mean and bootstrap interval."""
    by = {(r["variant"], r["seed"]): final_scores(r)[key] for r in records if r["family"] == family}
    seeds = sorted(s for (v, s) in by if v == a and (b, s) in by)
    diffs = [by[(a, s)] - by[(b, s)] for s in seeds]
    if not diffs:
        return None
    return {
        "seeds": seeds,
        "differences": diffs,
        "mean": float(np.mean(diffs)),
        "interval": bootstrap_interval(diffs, FLAGS.bootstrap),
        "wins": int(sum(d > 0 for d in diffs)),
    }


def summarize(records):
    out = {"variants": {}, "decisive": [], "secondary": [], "exploratory": []}
    for family in FLAGS.families:
        for name in VARIANTS:
            runs = sorted(
                (r for r in records if r["family"] == family and r["variant"] == name), key=lambda r: r["seed"]
            )
            if not runs:
                continue
            scores = [final_scores(r) for r in runs]
            entry = {
                "description": VARIANTS[name].description,
                "group": VARIANTS[name].group,
                "seeds": [r["seed"] for r in runs],
                "steps": scores[0]["step"],
                "target": [s["target"] for s in scores],
                "in_domain": [s["in_domain"] for s in scores],
                "domains": {k: [s["domains"][k] for s in scores] for k in scores[0]["domains"]},
                "wall_min": [r["wall_s"] / 60 for r in runs],
                "cpu_min": [r["cpu_s"] / 60 for r in runs],
            }
            if all("memory_read" in r for r in runs):
                entry["memory_read"] = _memory_read_means([r["memory_read"] for r in runs])
            out["variants"][f"{family}/{name}"] = entry
        exploratory = tuple(
            (name, v.against, v.description) for name, v in VARIANTS.items() if v.group in EXPLORATORY_GROUPS
        )
        for kind, table in (("decisive", DECISIVE), ("secondary", SECONDARY), ("exploratory", exploratory)):
            for a, b, question in table:
                for key in ("target", "in_domain"):
                    result = paired(records, family, a, b, key)
                    if result:
                        out[kind].append(
                            {"family": family, "variant": a, "against": b, "question": question, "score": key, **result}
                        )
    return out


def _memory_read_means(per_run):
    """Means over runs of the read diagnostics, over in-domain and over target domains; memory geometry."""
    out = {}
    for kind in ("target", "in_domain"):
        rows = [
            row for run in per_run for dom, row in run["domains"].items() if is_in_domain(dom) == (kind == "in_domain")
        ]
        if rows:
            out[kind] = {k: float(np.mean([row[k] for row in rows])) for k in rows[0] if k not in ("pixels", "images")}
    out["memory"] = {k: float(np.mean([run["memory"][k] for run in per_run])) for k in per_run[0]["memory"]}
    return out


# --------------------------------------------------------------------------------------------- report
def _mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def _interval(entry):
    low_high = entry["interval"]
    return "—" if low_high is None else f"[{low_high[0]:+.1f}, {low_high[1]:+.1f}]"


def markdown(summary, meta):
    lines = [
        f"Generated by `{meta['command']}` on {meta['date']} from {meta['num_runs']} run records "
        f"(`{FLAGS.records_dir}`); {meta['machine']}. mIoU in percent over the 19 classes. *Target*: mean "
        "over the three unseen target styles; *in-domain*: mean over held-out images of the three source "
        "styles. Differences are paired by seed; intervals are bootstrap 95% intervals of the mean "
        f"difference over seeds ({FLAGS.bootstrap} resamples).",
        "",
    ]
    for kind, title in (("decisive", "The comparisons fixed before the runs"), ("secondary", "Secondary comparison")):
        rows = summary[kind]
        if not rows:
            continue
        lines += [
            f"### {title}",
            "",
            "| family | comparison | score | mean difference | 95% interval | seeds better |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['family']} | `{r['variant']}` − `{r['against']}` | {r['score'].replace('_', '-')} "
                f"| **{r['mean']:+.1f}** | {_interval(r)} | {r['wins']}/{len(r['differences'])} |"
            )
        lines.append("")
    if summary["exploratory"]:
        lines += [
            "### Exploratory comparisons: one option changed, same seeds",
            "",
            "Each variant against the variant it changes one option of. Per-seed differences; too few "
            "seeds for an interval unless shown.",
            "",
            "| family | comparison | target difference | per seed | in-domain difference | per seed |",
            "|---|---|---|---|---|---|",
        ]
        by = {}
        for r in summary["exploratory"]:
            by.setdefault((r["family"], r["variant"], r["against"]), {})[r["score"]] = r
        for (family, a, b), scores in by.items():
            cells = []
            for key in ("target", "in_domain"):
                r = scores.get(key)
                if r is None:
                    cells += ["—", "—"]
                    continue
                interval = f" {_interval(r)}" if r["interval"] else ""
                cells += [f"**{r['mean']:+.1f}**{interval}", ", ".join(f"{d:+.1f}" for d in r["differences"])]
            lines.append(f"| {family} | `{a}` − `{b}` | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "### Every variant",
        "",
        "| family | variant | steps | in-domain | target | " + "per target | seeds | minutes per run (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, v in summary["variants"].items():
        family, name = key.split("/")
        per_target = ", ".join(
            f"{k.rsplit(':', 1)[-1]} {_mean_sd(vals)}" for k, vals in v["domains"].items() if not is_in_domain(k)
        )
        lines.append(
            f"| {family} | `{name}`: {v['description']} | {v['steps']} | {_mean_sd(v['in_domain'])} | "
            f"**{_mean_sd(v['target'])}** | {per_target} | {len(v['seeds'])} | "
            f"{np.mean(v['wall_min']):.1f} ({np.mean(v['cpu_min']):.1f}) |"
        )
    lines.append("")
    memory_rows = [(k, v) for k, v in summary["variants"].items() if "memory_read" in v]
    if memory_rows:
        lines += [
            "### The memory read (mean over runs and domains)",
            "",
            "Uniform read of 19 rows: max weight 0.053, entropy / log N = 1. *Score spread*: a pixel's "
            "largest minus smallest cosine score (the most a softmax at temperature T separates is "
            "spread / T, or spread x read scale); *feature direction*: mean cosine of a pixel's feature "
            "with the image's mean feature; *row cosine*: mean cosine between two memory rows.",
            "",
            "| family | variant | domains | read accuracy (%) | network accuracy (%) | max weight | "
            "entropy / log N | score spread | read scale | zero features | feature direction | row cosine |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key, v in memory_rows:
            family, name = key.split("/")
            rows_cos = v["memory_read"]["memory"]["row_cosine_mean"]
            for kind in ("in_domain", "target"):
                m = v["memory_read"].get(kind)
                if m:
                    lines.append(
                        f"| {family} | `{name}` | {kind.replace('_', '-')} | {m['read_accuracy']:.1f} | "
                        f"{m['network_accuracy']:.1f} | {m['mean_max_weight']:.3f} | "
                        f"{m['mean_normalized_entropy']:.3f} | {m['score_spread']:.2f} | "
                        f"{m.get('score_scale', 1.0):.2f} | "
                        f"{m['zero_feature_share']:.2f} | {m['feature_mean_direction_cosine']:.2f} | "
                        f"{rows_cos:.2f} |"
                    )
        lines.append("")
    return "\n".join(lines)


def plot_curves(records, path):
    """Learning curves of the regime runs: in-domain and target mIoU against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in records if VARIANTS.get(r["variant"], Variant("", "")).group == "regime"]
    if not runs:
        return None
    families = sorted({r["family"] for r in runs})
    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4), squeeze=False)
    for ax, family in zip(axes[0], families):
        for i, r in enumerate(sorted((r for r in runs if r["family"] == family), key=lambda r: r["variant"])):
            steps = [h["step"] for h in r["history"]]
            scores = [final_scores({"history": [h]}) for h in r["history"]]
            label = r["variant"].replace("regime_", "") + f" s{r['seed']}"
            ax.plot(
                steps, [s["in_domain"] for s in scores], "-o", color=f"C{i}", markersize=3, label=f"{label} in-domain"
            )
            ax.plot(steps, [s["target"] for s in scores], "--x", color=f"C{i}", markersize=3, label=f"{label} target")
        # The study's own baseline runs (3000 steps, every seed): the spread of the chosen setting.
        for j, r in enumerate(r for r in records if r["family"] == family and r["variant"] == "baseline"):
            steps = [h["step"] for h in r["history"]]
            scores = [final_scores({"history": [h]}) for h in r["history"]]
            ax.plot(
                steps,
                [s["in_domain"] for s in scores],
                "-",
                color="grey",
                lw=0.8,
                label="study baseline (3000 steps), seeds: in-domain" if j == 0 else None,
            )
            ax.plot(
                steps,
                [s["target"] for s in scores],
                "--",
                color="grey",
                lw=0.8,
                label="study baseline, seeds: target" if j == 0 else None,
            )
        ax.axhline(50, color="grey", lw=0.5)
        ax.set_title(f"{family}: baseline learning curves")
        ax.set_xlabel("training step")
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_decisive(summary, path):
    """Paired differences per family and comparison: seeds as dots, mean and 95% interval as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["decisive"] + summary["secondary"] if r["score"] == "target"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    for y, r in enumerate(rows):
        if r["interval"]:
            ax.plot(r["interval"], [y, y], "-", color="C0", lw=3, alpha=0.5)
        ax.plot(r["differences"], [y] * len(r["differences"]), "k.")
        ax.plot([r["mean"]], [y], "D", color="C3")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['family']}: {r['variant']} − {r['against']}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("target mIoU difference, same seed (points)")
    ax.set_title("dots: seeds; diamond: mean; bar: bootstrap 95% interval (from 3 seeds)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} x {cpu}, no GPU, Python {platform.python_version()}"


def all_records():
    out = []
    root = os.path.join(REPO, FLAGS.records_dir)
    for family in FLAGS.families:
        for name in VARIANTS:
            folder = os.path.join(root, family, name)
            if os.path.isdir(folder):
                for file in sorted(os.listdir(folder)):
                    if file.endswith(".json"):
                        with open(os.path.join(folder, file)) as f:
                            out.append(json.load(f))
    return out


def write_report():
    records = all_records()
    if not records:
        print("no run records to report")
        return
    summary = summarize(records)
    meta = {
        "command": "python tools/study.py --report_only",
        "date": f"{datetime.date.today()}",
        "machine": machine(),
        "num_runs": len(records),
    }
    os.makedirs(os.path.join(REPO, FLAGS.plots_dir), exist_ok=True)
    plot_curves(records, os.path.join(REPO, FLAGS.plots_dir, "learning_curves.png"))
    plot_decisive(summary, os.path.join(REPO, FLAGS.plots_dir, "decisive.png"))
    with open(os.path.join(REPO, FLAGS.results_json), "w") as f:
        json.dump({"meta": meta, **summary}, f, indent=1)
    replace_block(
        os.path.join(REPO, FLAGS.results_md),
        "<!-- generated by tools/study.py: begin -->",
        "<!-- generated by tools/study.py: end -->",
        markdown(summary, meta) + "\n",
        new_file_text="# Results\n",
    )
    print(f"wrote {FLAGS.results_md}, {FLAGS.results_json} and the plots in {FLAGS.plots_dir}")


def main(argv):
    del argv
    os.chdir(REPO)
    unknown = [n for n in FLAGS.variants or () if n not in VARIANTS]
    if unknown:
        raise app.UsageError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    names = FLAGS.variants or [n for n, v in VARIANTS.items() if v.group in FLAGS.groups]
    # Seed-major, so that a study stopped early has every variant with the same seeds; families alternate.
    jobs = [(f, n, s) for s in range(FLAGS.seeds) for f in FLAGS.families for n in names]
    if not FLAGS.report_only and jobs:
        # The first run of each family generates its scenes: run those alone so parallel runs do not race.
        for family in FLAGS.families:
            pending = [j for j in jobs if j[0] == family and _existing_record(*j) is None]
            if pending:
                train_one(*pending[0])
        failures = []
        with concurrent.futures.ThreadPoolExecutor(FLAGS.workers) as pool:
            for future in concurrent.futures.as_completed([pool.submit(train_one, *job) for job in jobs]):
                try:
                    future.result()
                except RuntimeError as e:
                    failures.append(str(e))
                    print(e, flush=True)
        if failures:
            print(f"{len(failures)} runs failed; re-run the same command to retry them", flush=True)
    write_report()


if __name__ == "__main__":
    app.run(main)
