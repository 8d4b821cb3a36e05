"""Faults: training SIGKILLed at random points (also inside a checkpoint write) and restarted with the same
command ends at the requested step with the weights and memory of an uninterrupted run, every checkpoint the
state file lists restores; a NaN/Inf loss or gradient stops the run naming the step (or is skipped and
counted), never reaches a checkpoint, and a class absent from every batch leaves its memory row untouched.

docs/RELIABILITY.md lists these faults. The kill times come from a seeded generator (repeatable plans; the
exact instant of an external SIGKILL still depends on the machine's speed)."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.errors import RunError
from mgml_tf.training import checkpoints
from tests import helpers
from tests import reliability_runs as rr
from tests.cli_helpers import REPO, env

KILL_SEED = 20261127


def check_listed(model_dir, announced=0):
    """Every checkpoint the state file lists restores completely (each variable read, all finite, step =
    its number); the newest is at least the last announced one. Returns the newest step (0: none)."""
    listed, newest = rr.state(model_dir)
    for path in listed:
        values = rr.tensors(path)
        assert int(values[checkpoints.variable_key("optimizer", "iteration")]) == rr.step_of(path), path
        assert checkpoints.variable_key("model", "memory/memory") in values, path
        assert all(np.all(np.isfinite(v)) for v in values.values() if v.dtype.kind == "f"), path
    step = rr.step_of(newest) if newest else 0
    assert step >= announced, (listed, announced)
    return step


def launch(model_dir, fault=None):
    e = env()
    e.pop(checkpoints.FAULT_ENV, None)
    if fault:
        e[checkpoints.FAULT_ENV] = fault
    return subprocess.Popen(
        [sys.executable, "-m", "mgml_tf.train", *rr.args(model_dir)],
        cwd=REPO,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def attempt(model_dir, resume_step, kill_after_step=None, delay=0.0, fault=None, timeout=400):
    """One run of the same command: SIGKILLed ``delay`` seconds after its progress line of
    ``kill_after_step`` (None: not killed from outside). Returns (returncode, stdout lines, last announced
    checkpoint step)."""
    rr.ensure_synthetic()
    proc = launch(model_dir, fault)
    lines, announced = [], 0
    deadline = time.time() + timeout
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            m = re.match(r"checkpoint .*ckpt-(\d+)$", lines[-1])
            if m:
                announced = int(m.group(1))
            if kill_after_step is not None and lines[-1].startswith(f"step {kill_after_step}/"):
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                break
            assert time.time() < deadline, "\n".join(lines)
    finally:
        if proc.poll() is None and kill_after_step is None:
            proc.wait(timeout=60)
        proc.kill()
        rest, err = proc.communicate()
    lines += rest.splitlines()
    announced = max(
        [announced] + [int(m.group(1)) for m in (re.match(r"checkpoint .*ckpt-(\d+)$", x) for x in lines) if m]
    )
    text = "\n".join(lines)
    if resume_step:
        assert (
            f"resumed from {os.path.join(model_dir, 'checkpoints', f'ckpt-{resume_step}')} (step {resume_step})" in text
        ), text + err
        assert "memory initialised" not in text
    else:
        assert "memory initialised" in text or proc.returncode == -signal.SIGKILL, text + err
    return proc.returncode, lines, announced, err


@pytest.mark.slow  # two training subprocesses
def test_killed_and_restarted_run_ends_like_an_uninterrupted_one(tmp_path):
    reference = rr.reference()  # runs side by side with the killed one
    start_nonfinite_runs()  # so do these (for the tests below): both cores busy
    model_dir = str(tmp_path / "killed")
    rng = np.random.default_rng(KILL_SEED)
    total = rr.STEPS

    # 1. Killed inside the checkpoint write of step k (the fault-injection hook): data half written, the
    #    state file not yet updated.
    k = int(rng.integers(2, 4))
    rc, lines, announced, err = attempt(model_dir, 0, fault=f"kill_in_checkpoint_write:{k}")
    assert rc == -signal.SIGKILL, "\n".join(lines) + err
    assert f"fault injection: SIGKILL while writing {os.path.join(model_dir, 'checkpoints', f'ckpt-{k}')}" in lines
    resume = check_listed(model_dir, announced)
    assert resume == k - 1
    half_written = os.path.join(model_dir, "checkpoints", f"ckpt-{k}")
    assert os.path.exists(half_written + ".index")
    with pytest.raises((tf.errors.OpError, ValueError, IndexError)):
        rr.tensors(half_written)  # really unreadable: the state file must not (and does not) name it

    # 2. SIGKILL from outside a random few milliseconds after a random step's progress line: in the
    #    checkpoint write that follows the line, or in the next step. (One such kill: each restart costs a
    #    new process and a trace of the step, ~25 s of CPU.)
    step = int(rng.integers(resume + 1, total - 1))  # at most total - 2: the kill lands before the end
    delay = float(rng.uniform(0.0, 0.15))
    rc, lines, announced, err = attempt(model_dir, resume, kill_after_step=step, delay=delay)
    assert rc == -signal.SIGKILL, "\n".join(lines) + err
    new_resume = check_listed(model_dir, announced)
    assert new_resume >= resume
    resume = new_resume

    # 3. The same command once more runs to the requested step.
    rc, lines, announced, err = attempt(model_dir, resume)
    assert rc == 0, "\n".join(lines) + err
    assert any(x.startswith(f"step {total}/{total}") for x in lines)
    assert check_listed(model_dir, announced) == total

    # Same weights, BatchNorm statistics, memory, dropout seed state, momentum slots and step as the run that
    # was never interrupted (input stream, schedule and Gumbel seeds are functions of the step).
    rc, out, err = reference.wait()
    assert rc == 0, err
    final = rr.assert_same_variables(
        os.path.join(model_dir, "checkpoints", f"ckpt-{total}"),
        os.path.join(reference.model_dir, "checkpoints", f"ckpt-{total}"),
    )
    assert any("memory" in key for key in final) and any("momentum" in key for key in final)


# ------------------------------------------------------------------------------------------ non-finite
def start_nonfinite_runs():
    """Two short runs side by side, NaN images injected: the default (stop at step 3), and skip with a limit
    of one skipped step (step 3 skipped, step 5 the second: stop)."""
    return {
        "stop": rr.started("nan_stop", steps=5, fault="nan_input:3"),
        "skip": rr.started(
            "nan_skip", "--nonfinite=skip", "--max_nonfinite_steps=1", steps=6, fault="nan_input:3,nan_input:5"
        ),
    }


@pytest.fixture(scope="module")
def nonfinite_runs():
    return {name: (run, run.wait()) for name, run in start_nonfinite_runs().items()}


def ckpt(run, step):
    return os.path.join(run.model_dir, "checkpoints", f"ckpt-{step}")


@pytest.mark.slow  # two training subprocesses (shared)
def test_nonfinite_loss_stops_with_one_line_naming_the_step(nonfinite_runs):
    run, (rc, out, err) = nonfinite_runs["stop"]
    assert rc == 1, out + err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "non-finite loss or gradients at step 3" in lines[0], err
    assert "ckpt-2" in lines[0]
    # No checkpoint after the bad step; the last good one is the uninterrupted run's, bit for bit.
    assert check_listed(run.model_dir) == 2
    reference = rr.reference()
    assert reference.wait()[0] == 0
    rr.assert_same_variables(ckpt(run, 2), ckpt(reference, 2))


@pytest.mark.slow  # two training subprocesses (shared)
def test_nonfinite_step_skipped_leaves_no_trace_and_is_counted(nonfinite_runs):
    run, (rc, out, err) = nonfinite_runs["skip"]
    assert "step 3: non-finite loss or gradients, step skipped (1 skipped in this run" in out
    assert "step 4/6  loss" in out
    # The second skipped step is one more than --max_nonfinite_steps=1: one line, the run stops.
    assert rc == 1, out + err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "more than --max_nonfinite_steps=1" in lines[0] and "step 5" in lines[0], err
    assert check_listed(run.model_dir) == 4
    # The skipped step 3 changed nothing but the step counter; step 4 trained on.
    reference = rr.reference()
    assert reference.wait()[0] == 0
    rr.assert_same_variables(ckpt(run, 3), ckpt(reference, 2), ignore=("save_counter", "optimizer/iteration"))
    assert int(rr.tensors(ckpt(run, 3))[checkpoints.variable_key("optimizer", "iteration")]) == 3


# ------------------------------------------------------------------------------------- in one process
def _model_state(model):
    return [v.numpy().copy() for v in model.variables] + [v.numpy().copy() for v in model.optimizer.variables]


def test_nonfinite_train_step_and_absent_class_keep_the_memory():
    """train_step: a class absent from every batch keeps its memory row (finite, bit-identical); a step
    with a NaN image applies nothing (weights, slots, BatchNorm, memory) but advances the step."""
    model = helpers.small_model()  # 4 classes; memory rows random unit vectors
    rng = np.random.default_rng(3)

    def two_class_episode():
        (x_tr, y_tr), (x_te, y_te) = helpers.episode(rng)

        def only(y):  # classes 0 and 1 only (255 kept)
            return tf.where(y == 255, y, y % 2)

        return (x_tr, only(y_tr)), (x_te, only(y_te))

    initial = model.memory.numpy().copy()
    initial[3] = 0.0  # class 3 also absent from the memory initialisation: a zero row (as initial_memory makes)
    model.memory.assign(initial)
    for _ in range(3):
        logs = model.train_step(two_class_episode())
        assert float(logs["step_fault"]) == 0.0 and np.isfinite(float(logs["loss"]))
    memory = model.memory.numpy()
    assert np.all(np.isfinite(memory))
    np.testing.assert_array_equal(memory[3], 0.0)
    np.testing.assert_array_equal(memory[2], initial[2])  # absent rows are not even re-normalised
    assert not np.array_equal(memory[:2], helpers.small_model().memory.numpy()[:2])  # present rows moved

    before = _model_state(model)
    step = int(model.optimizer.iterations.numpy())
    (x_tr, y_tr), te = two_class_episode()
    logs = model.train_step(((x_tr * np.float32("nan"), y_tr), te))
    assert float(logs["step_fault"]) == 1.0 and float(logs["nonfinite_steps"]) == 1.0
    assert int(model.optimizer.iterations.numpy()) == step + 1
    after = _model_state(model)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if not np.array_equal(a, b)]
    iteration_index = len(model.variables) + [v is model.optimizer.iterations for v in model.optimizer.variables].index(
        True
    )
    assert changed == [iteration_index]


def test_save_refuses_a_nonfinite_variable(tmp_path):
    model = helpers.small_model()
    model.optimizer.build(model.trainable_variables)
    mgr = checkpoints.manager(checkpoints.checkpoint_object(model), str(tmp_path), keep=3)
    good = checkpoints.save(mgr, 1, model.variables)
    model.memory.assign(np.full(model.memory.shape, np.nan, np.float32))
    with pytest.raises(RunError, match="step 2.*NaN or Inf.*memory"):
        checkpoints.save(mgr, 2, list(model.variables) + list(model.optimizer.variables))
    assert rr.state(str(tmp_path)) == ([good], good)
    assert not os.path.exists(os.path.join(tmp_path, "checkpoints", "ckpt-2.index"))


def test_state_file_never_lists_a_checkpoint_being_deleted(tmp_path, monkeypatch):
    """Killed while old checkpoints are deleted (keep_checkpoints): TF 2.21's manager deletes them first
    and drops them from the state file after; ours drops them first."""
    model = helpers.small_model()
    mgr = checkpoints.manager(checkpoints.checkpoint_object(model), str(tmp_path), keep=2)
    for step in (1, 2):
        checkpoints.save(mgr, step)

    class Killed(Exception):
        pass

    def killed(path):
        raise Killed(path)

    monkeypatch.setattr(checkpoints.os, "remove", killed)  # the process dies at the first deletion
    with pytest.raises(Killed):
        checkpoints.save(mgr, 3)
    monkeypatch.undo()
    listed, newest = rr.state(str(tmp_path))
    assert [os.path.basename(p) for p in listed] == ["ckpt-2", "ckpt-3"] and newest.endswith("ckpt-3")
    for path in listed:
        rr.tensors(path)
    assert os.path.exists(os.path.join(tmp_path, "checkpoints", "ckpt-1.index"))  # debris, not listed


def test_newest_checkpoint_with_truncated_data_falls_back(tmp_path):
    """The state file names a checkpoint whose data file was truncated afterwards (storage fault): its index
    reads, its data does not; the restore falls back to the previous checkpoint, every variable of it."""
    model = helpers.small_model()
    mgr = checkpoints.manager(checkpoints.checkpoint_object(model), str(tmp_path), keep=3)
    first = checkpoints.save(mgr, 1)
    want = [v.numpy().copy() for v in model.variables]
    model.memory.assign(model.memory.numpy()[::-1].copy())
    second = checkpoints.save(mgr, 2)
    data = [p for p in os.listdir(os.path.join(tmp_path, "checkpoints")) if p.startswith("ckpt-2.data")]
    path = os.path.join(tmp_path, "checkpoints", data[0])
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    fresh = helpers.small_model(init_seed=4)
    ckpt = checkpoints.checkpoint_object(fresh)
    messages = []
    assert (
        checkpoints.restore_latest(fresh, ckpt, checkpoints.manager(ckpt, str(tmp_path), 3), log=messages.append)
        == first
    )
    assert any(second in m and "unreadable" in m for m in messages)
    for v, w in zip(fresh.variables, want):
        np.testing.assert_array_equal(v.numpy(), w, err_msg=v.path)


def test_fault_injection_variable_is_checked():
    assert checkpoints.fault_injection({}) == {}
    assert checkpoints.fault_injection({checkpoints.FAULT_ENV: "nan_input:3,kill_in_checkpoint_write:4"}) == {
        "nan_input": {3},
        "kill_in_checkpoint_write": {4},
    }
    with pytest.raises(RunError, match="KIND:STEP"):
        checkpoints.fault_injection({checkpoints.FAULT_ENV: "explode:3"})
