"""Training killed (SIGKILL) after a checkpoint resumes from that step with its memory and optimiser state."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.training import checkpoints
from tests.cli_helpers import REPO, env, run_cli, tiny_args

# A training subprocess killed and rerun.
pytestmark = pytest.mark.slow


def test_kill_and_resume(tmp_path):
    model_dir, synth = str(tmp_path / "run"), str(tmp_path / "synth")
    args = tiny_args(model_dir, synth, "--train_steps=1000", "--checkpoint_every=2", "--log_every=1", "--deterministic")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mgml_tf.train", *args],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    deadline = time.time() + 400
    try:
        for line in proc.stdout:
            seen.append(line)
            if "checkpoint " in line and line.strip().endswith("ckpt-4"):
                proc.send_signal(signal.SIGKILL)  # right after the second checkpoint, mid-run
                break
            assert time.time() < deadline, "".join(seen)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    step = checkpoints.checkpoint_step(latest)
    assert step >= 4  # the newest complete checkpoint (a later one may have finished before the kill)
    saved_memory = checkpoints.read_variable(latest, "model", "memory/memory")
    reader = tf.train.load_checkpoint(latest)
    assert int(reader.get_tensor(checkpoints.variable_key("optimizer", "iteration"))) == step

    # Restart with the same flags, one more step, a checkpoint every step.
    args = tiny_args(
        model_dir, synth, f"--train_steps={step + 1}", "--checkpoint_every=1", "--log_every=1", "--deterministic"
    )
    out = run_cli("train", *args, check=True).stdout
    assert f"resumed from {latest} (step {step})" in out
    assert "memory initialised" not in out  # the restored memory is kept, not re-initialised
    assert f"step {step + 1}/{step + 1}" in out and "step 1/" not in out
    after = os.path.join(model_dir, "checkpoints", f"ckpt-{step + 1}")
    reader_after = tf.train.load_checkpoint(after)
    assert int(reader_after.get_tensor(checkpoints.variable_key("optimizer", "iteration"))) == step + 1
    # Keras SGD with momentum: m' = mu m - lr g; w' = w + m'. So w(step+1) - w(step) = m(step+1) exactly
    # when the restarted run started from the checkpoint's weights, and m(step+1) - mu m(step) = -lr g
    # is a gradient step from the checkpoint's momentum: both hold for every trainable variable.
    names = reader_after.get_variable_to_shape_map()
    checked = 0
    for key in names:
        if not key.startswith("optimizer/") or "_momentum" not in key:
            continue
        slot = key.split("/")[1]
        m_before, m_after = reader.get_tensor(key), reader_after.get_tensor(key)
        var_key = [
            k for k in names if k.startswith("model/") and k.split("/")[1].replace(".S", "_") + "_momentum" == slot
        ]
        assert len(var_key) == 1, slot
        w_before, w_after = reader.get_tensor(var_key[0]), reader_after.get_tensor(var_key[0])
        np.testing.assert_allclose(w_after - w_before, m_after, atol=1e-6, err_msg=slot)
        assert np.any(m_before != 0)  # the restored momentum is a real slot, not zeros
        checked += 1
    assert checked > 20
    # The memory written at step+1 starts from the restored memory: rows of classes absent from the batch
    # are unchanged, and every row stays unit-norm.
    memory_after = checkpoints.read_variable(after, "model", "memory/memory")
    np.testing.assert_allclose(
        np.linalg.norm(memory_after, axis=1)[np.linalg.norm(saved_memory, axis=1) > 0], 1.0, atol=1e-5
    )
    assert np.any(np.all(np.isclose(memory_after, saved_memory, atol=1e-6), axis=1))
