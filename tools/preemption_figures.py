"""Preemption figures: SIGTERM a short ``--deterministic`` training at seeded points, rerun it, compare.

    python -m tools.preemption_figures [--points=10] [--seed=0] [--train_steps=8] [--parallel=1] \\
        [--work_dir=DIR] [--doc=docs/RELIABILITY.md]

Trains configs/demo_tiny.cfg on two synthetic source styles (one meta-train/meta-test split size: the step is
traced once) for ``--train_steps`` steps, a checkpoint every 3 steps, an evaluation of the three synthetic
targets at step 4 and at the end, once without interruption, then once per point in a fresh model
directory, sending SIGTERM at that point, and reruns the same command to completion. The points are drawn
from ``--seed``, each at a different place: during the first step (it traces the graph for seconds), inside
a checkpoint write and inside the periodic and the final evaluation (the fault hooks
``sigterm_in_checkpoint_write`` and ``sigterm_in_evaluation``, which send the signal from inside), and the rest
at a random delay after the progress line of a random step. Per point the table gives the last step logged
before the signal, the step of the newest checkpoint after the exit, the steps lost (logged but not in a
checkpoint; goal 0), the time from the signal to the exit, the exit status, the step the rerun resumed from
and whether the rerun's final checkpoint is bit-identical to the uninterrupted run's. ``--parallel`` points
run at a time (each one's run and rerun in turn). The measurement resumes: every finished point is kept in
``--work_dir``/rows.jsonl and not run again, the uninterrupted run is reused, and ``--first_point`` leaves the
points before it to another invocation on the same ``--work_dir``. ``measure`` does the work; ``--doc`` writes
the table into that file's generated block once every point is recorded.
"""

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from tools import machine, markdown_blocks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- preemption figures: begin (python -m tools.preemption_figures --doc=docs/RELIABILITY.md) -->"
END = "<!-- preemption figures: end -->"
CHECKPOINT_EVERY, EVAL_EVERY = 3, 4


@dataclasses.dataclass
class Point:
    """Where SIGTERM lands: ``kind`` first_step | checkpoint_write | evaluation | final_evaluation | after_step;
    ``step`` (the hook's step, or the step whose progress line starts the delay) and ``delay`` in seconds."""

    kind: str
    step: int = 0
    delay: float = 0.0

    def describe(self):
        return {
            "first_step": f"first step, {self.delay:.1f} s into it",
            "checkpoint_write": f"inside the checkpoint write of step {self.step}",
            "evaluation": f"inside the evaluation of step {self.step}",
            "final_evaluation": f"inside the final evaluation (step {self.step})",
            "after_step": f"{self.delay:.2f} s after the line of step {self.step}",
        }[self.kind]


def draw_points(n, train_steps, seed):
    """``n`` distinct points: the four places that must be tried, then random (step, delay) pairs."""
    rng = random.Random(seed)
    checkpoints = [s for s in range(CHECKPOINT_EVERY, train_steps, CHECKPOINT_EVERY)]
    fixed = [
        Point("first_step", 1, round(rng.uniform(0.5, 3.0), 1)),
        Point("checkpoint_write", rng.choice(checkpoints)),
        Point("evaluation", EVAL_EVERY),
        Point("final_evaluation", train_steps),
    ]
    points, seen = fixed[:n], set()
    while len(points) < n:
        step, delay = rng.randint(1, train_steps - 1), round(rng.uniform(0.0, 1.5), 2)
        if (step, delay) not in seen:
            seen.add((step, delay))
            points.append(Point("after_step", step, delay))
    return points


def train_args(model_dir, synthetic_root, train_steps):
    return [
        "--flagfile=configs/demo_tiny.cfg",
        f"--model_dir={model_dir}",
        f"--synthetic_root={synthetic_root}",
        "--sources=synthetic:sunny_game,synthetic:overcast_sim",
        f"--train_steps={train_steps}",
        f"--checkpoint_every={CHECKPOINT_EVERY}",
        f"--eval_every={EVAL_EVERY}",
        "--keep_checkpoints=20",
        "--log_every=1",
        "--memory_init_batches=1",
        "--deterministic",
    ]


class Run:
    """A training subprocess whose stdout lines are recorded with the time they were read."""

    def __init__(self, args, environ=None):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(environ or {}))
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        self.lines, self.started = [], time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mgml_tf.train", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True).start()

    @staticmethod
    def _read(stream, out):
        for line in stream:
            out.append((time.time(), line.rstrip("\n")))

    def wait_for(self, prefix, timeout):
        """The time the first line starting with ``prefix`` was read (None if the process ended first)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for t, line in list(self.lines):
                if line.startswith(prefix):
                    return t
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the reader may still hold the last lines
                return next((t for t, line in list(self.lines) if line.startswith(prefix)), None)
            time.sleep(0.02)
        raise TimeoutError(f"no line starting with {prefix!r} within {timeout} s")

    def finish(self, timeout):
        self.proc.wait(timeout=timeout)
        ended = time.time()
        time.sleep(0.2)
        return ended

    def steps_logged_before(self, moment):
        steps = [int(line.split()[1].split("/")[0]) for t, line in self.lines if t <= moment and _is_step(line)]
        return max(steps, default=0)

    def output(self):
        return "\n".join(line for _, line in self.lines + self.stderr)


def _is_step(line):
    return line.startswith("step ") and "/" in line.split()[1]


def checkpoint_variables(path):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    return {
        k: reader.get_tensor(k)
        for k in reader.get_variable_to_shape_map()
        if not k.startswith(("_CHECKPOINT", "save_counter"))  # how many saves the directory has seen
    }


def bit_identical(a, b):
    import numpy as np

    return sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def newest_step(model_dir):
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else 0


def preempt(point, model_dir, synthetic_root, train_steps, timeout=1200):
    """One interrupted run and its rerun; returns the table row's values as a dict."""
    args = train_args(model_dir, synthetic_root, train_steps)
    hooks = {"checkpoint_write": "sigterm_in_checkpoint_write", "evaluation": "sigterm_in_evaluation"}
    hooks["final_evaluation"] = "sigterm_in_evaluation"
    environ = {"MGML_TF_FAULT_INJECT": f"{hooks[point.kind]}:{point.step}"} if point.kind in hooks else {}
    run = Run(args, environ)
    if point.kind in hooks:
        sent = run.wait_for("fault injection: SIGTERM", timeout)
        done = point.step  # the hook fires after that step (its checkpoint write, its evaluation)
    else:
        anchor = "training steps" if point.kind == "first_step" else f"step {point.step}/"
        t = run.wait_for(anchor, timeout)
        time.sleep(max(0.0, t + point.delay - time.time()))
        sent = time.time()
        run.proc.send_signal(signal.SIGTERM)
        done = run.steps_logged_before(sent)
    ended = run.finish(timeout)
    if sent is None:
        raise RuntimeError(f"the signal of {point.describe()} was never sent:\n{run.output()}")
    saved = newest_step(model_dir)
    stop_lines = [line for _, line in run.lines if "SIGTERM:" in line]
    rerun = Run(args)
    rerun.finish(timeout)
    resumed = next((line for _, line in rerun.lines if line.startswith("resumed from")), "")
    return {
        "point": point.describe(),
        "logged": done,
        "checkpoint": saved,
        "lost": max(0, done - saved),
        "seconds": ended - sent,
        "status": run.proc.returncode,
        "said": stop_lines[0] if stop_lines else "",
        "resumed": int(resumed.rsplit("(step ", 1)[1].rstrip(")")) if resumed else None,
        "rerun_status": rerun.proc.returncode,
        "output": run.output() if run.proc.returncode else "",
    }


def _recorded(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {row["index"]: row for row in map(json.loads, filter(str.strip, f))}


def measure(points=10, seed=0, train_steps=8, work_dir=None, parallel=1, first_point=0, log=print):
    """Runs the uninterrupted reference (unless ``work_dir`` holds it) and every point from ``first_point`` on
    that ``work_dir``/rows.jsonl does not record yet, ``parallel`` at a time; returns (rows of the points
    recorded, in order; reference seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    work_dir = work_dir or tempfile.mkdtemp(prefix="mgml_preemption_")
    synthetic_root = os.path.join(work_dir, "synth")
    straight = os.path.join(work_dir, "straight")
    final_path = os.path.join(straight, "checkpoints", f"ckpt-{train_steps}")
    reference_record = os.path.join(work_dir, "reference.json")
    if os.path.exists(reference_record) and os.path.exists(final_path + ".index"):
        with open(reference_record) as f:
            reference_seconds = json.load(f)["seconds"]
    else:
        shutil.rmtree(straight, ignore_errors=True)
        t0 = time.time()
        reference = Run(train_args(straight, synthetic_root, train_steps))
        reference.finish(1800)
        if reference.proc.returncode:
            raise RuntimeError(f"the uninterrupted run failed:\n{reference.output()}")
        reference_seconds = time.time() - t0
        with open(reference_record, "w") as f:
            json.dump({"seconds": reference_seconds, "train_steps": train_steps}, f)
    final = checkpoint_variables(final_path)
    log(f"uninterrupted run: {reference_seconds:.0f} s")
    rows_path = os.path.join(work_dir, "rows.jsonl")
    lock = threading.Lock()

    def one(i, point):
        model_dir = os.path.join(work_dir, f"point_{i}")
        shutil.rmtree(model_dir, ignore_errors=True)
        row = preempt(point, model_dir, synthetic_root, train_steps)
        ckpt = os.path.join(model_dir, "checkpoints", f"ckpt-{train_steps}")
        row["identical"] = os.path.exists(ckpt + ".index") and bit_identical(checkpoint_variables(ckpt), final)
        log(
            f"point {i + 1}/{points}: {row['point']}: logged {row['logged']}, checkpoint {row['checkpoint']}, lost "
            f"{row['lost']}, {row['seconds']:.1f} s to exit, status {row['status']}, resumed from "
            f"{row['resumed']}, final weights {'bit-identical' if row['identical'] else 'DIFFERENT'}"
        )
        if row["output"]:
            log(row["output"])
        row["index"] = i
        with lock, open(rows_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    drawn = draw_points(points, train_steps, seed)
    todo = [(i, drawn[i]) for i in range(first_point, points) if i not in _recorded(rows_path)]
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(one, *zip(*todo)))
    recorded = _recorded(rows_path)
    return [recorded[i] for i in range(points) if i in recorded], reference_seconds


def table(rows, train_steps, seed, reference_seconds):
    lines = [
        f"SIGTERM at {len(rows)} points (seed {seed}) of a {train_steps}-step run; each rerun to the end compared "
        f"with the uninterrupted run ({reference_seconds:.0f} s):",
        "",
        "| # | where SIGTERM landed | last step logged before it | newest checkpoint after the exit | steps lost "
        "| signal to exit | exit status | rerun resumed from step | final weights vs uninterrupted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | {r['point']} | {r['logged']} | {r['checkpoint']} | {r['lost']} | {r['seconds']:.1f} s | "
            f"{r['status']} | {r['resumed'] if r['resumed'] is not None else '-'} | "
            f"{'bit-identical' if r['identical'] else 'different'} |"
        )
    lost = sum(r["lost"] for r in rows)
    seconds = sorted(r["seconds"] for r in rows)
    lines += [
        "",
        f"Steps lost: {lost} in {len(rows)} preemptions. Signal to exit: median {seconds[len(seconds) // 2]:.1f} s, "
        f"largest {seconds[-1]:.1f} s. Final weights bit-identical to the uninterrupted run's: "
        f"{sum(r['identical'] for r in rows)} of {len(rows)}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10, help="Preemptions to try (>= 1).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the points.")
    parser.add_argument("--train_steps", type=int, default=8, help="Steps of the run (>= 5).")
    parser.add_argument("--parallel", type=int, default=1, help="Points run at a time.")
    parser.add_argument(
        "--first_point", type=int, default=0, help="Run the points from this one (0-based) on; others are left."
    )
    parser.add_argument("--work_dir", default=None, help="Where the runs go (default: a new temporary folder).")
    parser.add_argument("--doc", default=None, help="Markdown file whose generated block receives the table.")
    args = parser.parse_args(argv)
    if args.points < 1 or args.train_steps < 5:
        parser.error("--points must be >= 1 and --train_steps >= 5")
    rows, reference_seconds = measure(
        args.points, args.seed, args.train_steps, args.work_dir, args.parallel, args.first_point
    )
    if len(rows) < args.points:
        print(f"{len(rows)} of {args.points} points recorded in {args.work_dir}; run again for the others")
        return 1
    info = machine.describe()
    block = (
        table(rows, args.train_steps, args.seed, reference_seconds)
        + f"\nMachine: {machine.summary(info)}; {args.parallel} point(s) at a time, other jobs running.\n"
    )
    print(block)
    if args.doc:
        markdown_blocks.replace_block(args.doc, BEGIN, END, block)
    return 0 if all(r["lost"] == 0 and r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
