"""A full disk during a checkpoint or an export write (docs/RELIABILITY.md): the previous checkpoint, the
state file and any previous export stay intact, the partial files go, and the run stops with one line."""

import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.errors import RunError
from mgml_tf.training import checkpoints
from tests.cli_helpers import refused, run_cli, tiny_args


def _manager(directory, shape=(64, 64)):
    v = tf.Variable(np.zeros(shape, np.float32))
    return v, checkpoints.Manager(
        tf.train.Checkpoint(v=v), directory, max_to_keep=3, checkpoint_name=checkpoints.PREFIX
    )


def _state(directory):
    with open(os.path.join(directory, "checkpoint")) as f:
        return f.read()


def test_no_space_in_a_checkpoint_write_keeps_the_previous_and_removes_the_partial(tmp_path, monkeypatch):
    directory = str(tmp_path / "checkpoints")
    v, manager = _manager(directory)
    first = checkpoints.save(manager, 1, [v])
    state, files = _state(directory), sorted(os.listdir(directory))
    v.assign(v + 1.0)
    monkeypatch.setenv(checkpoints.FAULT_ENV, "no_space_in_checkpoint_write:2")
    with pytest.raises(RunError) as info:
        checkpoints.save(manager, 2, [v])
    message = str(info.value)
    assert "\n" not in message and "no space left on device" in message and first in message
    assert _state(directory) == state and sorted(os.listdir(directory)) == files  # nothing of step 2 is left
    np.testing.assert_array_equal(tf.train.load_checkpoint(first).get_tensor("v/.ATTRIBUTES/VARIABLE_VALUE"), 0.0)


def test_a_really_full_filesystem(tmp_path):
    """The same on a 300 KB tmpfs the test mounts: TensorFlow's own ResourceExhaustedError and _temp folder."""
    root = tmp_path / "small"
    os.makedirs(root)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(root)], capture_output=True)
    if mount.returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root); the fault-hook test above covers the logic")
    try:
        directory = str(root / "checkpoints")
        small, manager = _manager(directory)  # 16 KB: fits
        first = checkpoints.save(manager, 1, [small])
        state = _state(directory)
        big, manager_big = _manager(directory, shape=(400, 400))  # 640 KB: does not
        with pytest.raises(RunError, match="no space left on device while writing the checkpoint of step 2"):
            checkpoints.save(manager_big, 2, [big])
        assert _state(directory) == state and not [n for n in os.listdir(directory) if "ckpt-2" in n]
        assert tf.train.latest_checkpoint(directory) == first
    finally:
        subprocess.run(["umount", str(root)], capture_output=True)


@pytest.mark.slow  # training subprocesses
def test_training_stops_with_one_line_on_a_full_disk_and_resumes(tmp_path):
    model_dir, synth = str(tmp_path / "run"), str(tmp_path / "synth")
    args = tiny_args(model_dir, synth, "--train_steps=4", "--checkpoint_every=1", "--targets=")
    proc = run_cli("train", *args, extra_env={checkpoints.FAULT_ENV: "no_space_in_checkpoint_write:3"})
    refused(proc, "no space left on device", "checkpoint of step 3", "ckpt-2")
    assert proc.returncode == 1
    folder = os.path.join(model_dir, "checkpoints")
    assert tf.train.latest_checkpoint(folder).endswith("ckpt-2")
    assert not [n for n in os.listdir(folder) if n.startswith("ckpt-3")]
    resumed = run_cli("train", *args, check=True).stdout
    assert "(step 2)" in resumed and "step 4/4" in resumed


def test_no_space_during_export_keeps_the_previous_export(tmp_path, monkeypatch):
    from mgml_tf import serving
    from tests.helpers import small_model

    model = small_model()
    export_dir = str(tmp_path / "export")
    serving.export(model, export_dir)
    before = sorted(os.listdir(export_dir))

    def full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "variables.data-00000-of-00001; No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", full)
    with pytest.raises(RunError, match="no space left on device while exporting .* previous one kept"):
        serving.export(model, export_dir)
    assert sorted(os.listdir(export_dir)) == before
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no partial folder left
