"""Checkpoints: every variable round-trips (weights, memory, optimiser slots, step), an interrupted write
never hides the previous checkpoint, an unreadable newest checkpoint falls back, other shapes are refused."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.errors import RunError
from mgml_tf.training import checkpoints
from tests import helpers


def _trained(steps=2, **options):
    """A model whose every variable (weights, BN statistics, memory, momentum slots, step) holds
    non-default values, as after ``steps`` steps of training (random values: no tracing needed)."""
    model = helpers.small_model(**options)
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(steps)
    for v in model.variables + list(model.optimizer.variables):
        if v is model.optimizer.iterations:
            v.assign(steps)
        else:
            v.assign(rng.normal(size=v.shape).astype(v.dtype))
    return model


def _values(model):
    out = {v.path: np.array(v.numpy()) for v in model.variables}
    out.update(
        {"opt:" + checkpoints.optimizer_key(model.optimizer, v): np.array(v.numpy()) for v in model.optimizer.variables}
    )
    return out


def test_round_trip_restores_memory_slots_and_step(tmp_path):
    model = _trained()
    ckpt = checkpoints.checkpoint_object(model)
    mgr = checkpoints.manager(ckpt, str(tmp_path), keep=2)
    path = mgr.save(checkpoint_number=int(model.optimizer.iterations.numpy()))
    want = _values(model)
    assert int(model.optimizer.iterations.numpy()) == 2

    fresh = helpers.small_model(init_seed=5)
    ckpt2 = checkpoints.checkpoint_object(fresh)
    mgr2 = checkpoints.manager(ckpt2, str(tmp_path), keep=2)
    assert checkpoints.restore_latest(fresh, ckpt2, mgr2) == path
    got = _values(fresh)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    np.testing.assert_array_equal(fresh.memory.numpy(), checkpoints.read_variable(path, "model", "memory/memory"))
    assert float(fresh.optimizer.learning_rate) == pytest.approx(float(model.optimizer.learning_rate))


def test_keeps_newest_k(tmp_path):
    model = helpers.small_model()
    mgr = checkpoints.manager(checkpoints.checkpoint_object(model), str(tmp_path), keep=2)
    for step in (1, 2, 3):
        mgr.save(checkpoint_number=step)
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(tmp_path, "checkpoints", "*.index")))
    assert names == ["ckpt-2.index", "ckpt-3.index"]


def test_interrupted_write_leaves_previous_checkpoint_current(tmp_path):
    """A write killed before the state file update: the state file still names the complete checkpoint."""
    model = _trained(steps=1)
    ckpt = checkpoints.checkpoint_object(model)
    mgr = checkpoints.manager(ckpt, str(tmp_path), keep=3)
    good = mgr.save(checkpoint_number=1)
    # What a kill mid-write leaves: shard files in ckpt-2_temp/ and a truncated merged file, no state update.
    folder = os.path.join(tmp_path, "checkpoints")
    os.makedirs(os.path.join(folder, "ckpt-2_temp"))
    with open(os.path.join(folder, "ckpt-2_temp", "part-00000-of-00001.data-00000-of-00001"), "wb") as f:
        f.write(b"\0" * 100)
    with open(os.path.join(folder, "ckpt-2.index"), "wb") as f:
        f.write(b"truncated")
    fresh = helpers.small_model(init_seed=3)
    ckpt2 = checkpoints.checkpoint_object(fresh)
    mgr2 = checkpoints.manager(ckpt2, str(tmp_path), keep=3)
    assert checkpoints.restore_latest(fresh, ckpt2, mgr2, log=lambda m: None) == good
    np.testing.assert_array_equal(fresh.memory.numpy(), model.memory.numpy())
    # The next save of step 2 replaces the debris and becomes current.
    assert mgr2.save(checkpoint_number=2) == os.path.join(folder, "ckpt-2")
    tf.train.load_checkpoint(os.path.join(folder, "ckpt-2"))


def test_unreadable_newest_falls_back_to_older(tmp_path):
    model = _trained(steps=1)
    mgr = checkpoints.manager(checkpoints.checkpoint_object(model), str(tmp_path), keep=3)
    first = mgr.save(checkpoint_number=1)
    second = mgr.save(checkpoint_number=2)
    with open(second + ".index", "wb") as f:  # e.g. a full disk truncated it after the state update
        f.write(b"x")
    fresh = helpers.small_model(init_seed=3)
    ckpt2 = checkpoints.checkpoint_object(fresh)
    messages = []
    assert (
        checkpoints.restore_latest(fresh, ckpt2, checkpoints.manager(ckpt2, str(tmp_path), 3), log=messages.append)
        == first
    )
    assert any("unreadable" in m for m in messages)


def test_other_num_classes_refused(tmp_path):
    model = helpers.small_model()
    mgr = checkpoints.manager(checkpoints.checkpoint_object(model), str(tmp_path), keep=1)
    mgr.save(checkpoint_number=1)
    other = helpers.small_model(num_classes=5)
    ckpt2 = checkpoints.checkpoint_object(other)
    with pytest.raises(RunError, match="num_classes") as refused:
        checkpoints.restore_latest(other, ckpt2, checkpoints.manager(ckpt2, str(tmp_path), 1))
    assert f"checkpoint {os.path.join(str(tmp_path), 'checkpoints', 'ckpt-1')} holds " in str(refused.value)


def test_keys_do_not_depend_on_models_built_before(tmp_path):
    """Keras names dropout seed generators from a per-process counter; a checkpoint written by one model
    restores into a model built after others (a different counter), state included."""
    model = _trained(dropout=0.1)
    generators = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    assert generators  # the dropout layers carry random state
    path = checkpoints.manager(checkpoints.checkpoint_object(model), str(tmp_path), keep=1).save(checkpoint_number=2)
    helpers.small_model(dropout=0.1)  # moves the counter on
    fresh = helpers.small_model(dropout=0.1, init_seed=5)
    assert [v.path for v in fresh.variables] != [v.path for v in model.variables]
    ckpt = checkpoints.checkpoint_object(fresh)
    assert checkpoints.restore_latest(fresh, ckpt, checkpoints.manager(ckpt, str(tmp_path), keep=1)) == path
    for a, b in zip(model.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
