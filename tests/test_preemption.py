"""Preemption (docs/RELIABILITY.md): SIGTERM or SIGINT during training finishes the step in progress, writes
its checkpoint, says so in one line and exits 0; the same command resumes, and with --deterministic the run
ends bit-identical to one never interrupted. A second signal exits at once."""

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
