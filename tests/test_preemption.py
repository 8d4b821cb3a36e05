"""Preemption (docs/RELIABILITY.md): SIGTERM or SIGINT during training finishes the step in progress, writes
its checkpoint, says so in one line and exits 0; the same command resumes, and with --deterministic the run
ends bit-identical to one never interrupted. A second signal exits at once."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.training import checkpoints
from mgml_tf.training.preemption import StopRequest
from tests.cli_helpers import REPO, env, run_cli, tiny_args

STEPS = 12
ARGS = (f"--train_steps={STEPS}", "--checkpoint_every=100", "--log_every=1", "--deterministic", "--targets=")


def _start(model_dir, synth):
    return subprocess.Popen(
        [sys.executable, "-m", "mgml_tf.train", *tiny_args(model_dir, synth, *ARGS)],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _signal_after(proc, step, signals, gap=0.0, timeout=400):
    """Sends ``signals`` once the line of ``step`` is printed; returns (stdout lines, seconds to exit)."""
    seen, deadline = [], time.time() + timeout
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"step {step}/"):
            sent = time.time()
            for s in signals:
                proc.send_signal(s)
                time.sleep(gap)
            break
        assert time.time() < deadline, "".join(seen)
    out, err = proc.communicate(timeout=timeout)
    return seen + out.splitlines(keepends=True), time.time() - sent, err


def _variables(path):
    reader = tf.train.load_checkpoint(path)
    names = reader.get_variable_to_shape_map()
    # everything but the checkpoint's own bookkeeping (how many saves this directory has seen)
    return {k: reader.get_tensor(k) for k in names if not k.startswith(("_CHECKPOINT", "save_counter"))}


def _stop(model_dir, synth, signum):
    """Trains, signals after step 3; returns the step of the checkpoint written on the way out."""
    proc = _start(model_dir, synth)
    lines, _, err = _signal_after(proc, 3, [signum])
    assert proc.returncode == 0, err
    notice = [line for line in lines if "stopped after step" in line]
    assert len(notice) == 1 and notice[0].startswith(signal.Signals(signum).name), "".join(lines)
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    stop_step = checkpoints.checkpoint_step(latest)
    last_logged = max(int(line.split()[1].split("/")[0]) for line in lines if line.startswith("step "))
    assert stop_step == last_logged >= 3  # no step that ran is lost
    assert f"stopped after step {stop_step}/{STEPS}" in notice[0]
    return stop_step


@pytest.mark.slow  # three training subprocesses
def test_sigterm_checkpoints_the_step_and_the_rerun_ends_as_if_never_stopped(tmp_path):
    synth = str(tmp_path / "synth")
    stopped_dir, straight_dir = str(tmp_path / "stopped"), str(tmp_path / "straight")
    stop_step = _stop(stopped_dir, synth, signal.SIGTERM)
    resumed = run_cli("train", *tiny_args(stopped_dir, synth, *ARGS), check=True).stdout
    assert f"(step {stop_step})" in resumed and f"step {STEPS}/{STEPS}" in resumed
    run_cli("train", *tiny_args(straight_dir, synth, *ARGS), check=True)
    a = _variables(os.path.join(stopped_dir, "checkpoints", f"ckpt-{STEPS}"))
    b = _variables(os.path.join(straight_dir, "checkpoints", f"ckpt-{STEPS}"))
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow  # a training subprocess
def test_sigint_stops_the_same_way(tmp_path):
    _stop(str(tmp_path / "run"), str(tmp_path / "synth"), signal.SIGINT)


@pytest.mark.slow  # a training subprocess
def test_second_signal_exits_at_once(tmp_path):
    proc = _start(str(tmp_path / "run"), str(tmp_path / "synth"))
    _, seconds, _ = _signal_after(proc, 2, [signal.SIGTERM, signal.SIGTERM], gap=0.05)
    assert proc.returncode == -signal.SIGTERM and seconds < 30


def test_stop_request_records_the_first_signal_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert stop.requested and stop.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow  # three training subprocesses
def test_signal_inside_an_evaluation_ends_it_and_the_rerun_evaluates_that_step(tmp_path):
    """SIGTERM inside the periodic evaluation (fault hook) stops after it with the step's checkpoint and no
    results of that step; the rerun evaluates the step first. SIGTERM inside the final evaluation: training
    is complete, the evaluation is done by the rerun. Meanwhile an evaluation tool reads only complete
    checkpoints: the debris of a write in progress is not what it restores."""
    from mgml_tf.training import model_dir as md

    model_dir, synth = str(tmp_path / "run"), str(tmp_path / "synth")
    args = tiny_args(
        model_dir, synth, "--train_steps=3", "--eval_every=2", "--checkpoint_every=5", "--memory_init_batches=1"
    )
    history = os.path.join(model_dir, md.EVAL_HISTORY)

    def evaluated_steps():
        if not os.path.exists(history):
            return []
        with open(history) as f:
            return [json.loads(line)["step"] for line in f]

    first = run_cli("train", *args, extra_env={checkpoints.FAULT_ENV: "sigterm_in_evaluation:2"})
    assert first.returncode == 0, first.stderr
    assert "SIGTERM: stopped after step 2/3 (its evaluation interrupted) with its checkpoint" in first.stdout
    assert checkpoints.checkpoint_step(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))) == 2
    assert evaluated_steps() == []

    # A checkpoint write in progress (unlisted files, a _temp folder) is never what an evaluation restores.
    folder = os.path.join(model_dir, "checkpoints")
    os.makedirs(os.path.join(folder, "ckpt-3_temp"))
    with open(os.path.join(folder, "ckpt-3.index"), "wb") as f:
        f.write(b"half written")
    _, _, path = md.build_from_dir(model_dir, log=lambda message: None)
    assert path == os.path.join(folder, "ckpt-2")

    second = run_cli("train", *args, extra_env={checkpoints.FAULT_ENV: "sigterm_in_evaluation:3"})
    assert second.returncode == 0, second.stderr
    assert "the evaluation of step 2 was interrupted; evaluating it first" in second.stdout
    assert "SIGTERM: training ended at step 3 with its checkpoint; the final evaluation was interrupted" in (
        second.stdout
    )
    assert evaluated_steps() == [2]
    third = run_cli("train", *args, check=True)
    assert "nothing to train" in third.stdout and "evaluation at step 3" in third.stdout
    assert evaluated_steps() == [2, 3]


def test_preemption_figures_draws_distinct_points_and_tabulates():
    from tools import preemption_figures as figures

    points = figures.draw_points(10, 8, seed=3)
    assert [p.kind for p in points[:4]] == ["first_step", "checkpoint_write", "evaluation", "final_evaluation"]
    assert len({(p.kind, p.step, p.delay) for p in points}) == 10
    assert all(1 <= p.step <= 7 for p in points if p.kind == "after_step")
    assert points[1].step % figures.CHECKPOINT_EVERY == 0
    assert figures.draw_points(10, 8, seed=3) == points != figures.draw_points(10, 8, seed=4)
    rows = [
        dict(point=p.describe(), logged=s, checkpoint=s + 1, lost=0, seconds=2.0 + s, status=0, resumed=s + 1)
        for s, p in enumerate(points[:3])
    ]
    for row in rows:
        row["identical"] = True
    text = figures.table(rows, 8, 3, 60.0)
    assert text.count("| bit-identical |") == 3 and "Steps lost: 0 in 3 preemptions" in text
    assert "median 3.0 s, largest 4.0 s" in text
