"""--memory_rewrite_every: the memory is rewritten as class means of the *current* encoder's features."""

import os

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.data import aggregated_batches
from mgml_tf.data.augment import GEOMETRY_ONLY
from mgml_tf.training import checkpoints
from mgml_tf.training import data as data_lib
from mgml_tf.training.model_dir import build_from_dir, load_config
from tests.cli_helpers import run_cli, tiny_args


def _memory(model_dir, step):
    return checkpoints.read_variable(os.path.join(model_dir, "checkpoints", f"ckpt-{step}"), "model", "memory/memory")


@pytest.mark.slow  # a training subprocess
def test_rewrite_writes_class_means_of_the_trained_encoder(tmp_path):
    synth = str(tmp_path / "synth")
    common = ("--train_steps=3", "--checkpoint_every=2", "--deterministic", "--targets=")
    rewritten, plain = str(tmp_path / "rewrite"), str(tmp_path / "plain")
    out = run_cli("train", *tiny_args(rewritten, synth, *common, "--memory_rewrite_every=2"), check=True).stdout
    assert "memory rewritten at step 2 from 2 source batches" in out
    assert "rewritten at step 3" not in out and "rewritten at step 1" not in out  # never after the last step
    assert "rewritten" not in run_cli("train", *tiny_args(plain, synth, *common), check=True).stdout

    # The same run without the rewrite holds another memory at step 2 (the update network's).
    assert not np.allclose(_memory(rewritten, 2), _memory(plain, 2), atol=1e-4)

    # Recompute: the encoder of checkpoint 2, the initialisation's batches, class means (Sec. 3.2).
    model, config, _ = build_from_dir(rewritten, log=lambda *_: None, restore=False)
    checkpoint = checkpoints.checkpoint_object(model)
    checkpoint.restore(os.path.join(rewritten, "checkpoints", "ckpt-2")).expect_partial()
    sources = data_lib.load(config["resolved"]["sources"], "train", "sources")
    flags = load_config(rewritten)["flags"]
    batches = aggregated_batches(
        sources,
        int(flags["batch_per_domain"]),
        (64, 64),
        seed=int(flags["seed"]),
        deterministic=True,
        augment_config=GEOMETRY_ONLY,
    )
    expected = model.initialize_memory(batches, max_batches=2).numpy()
    np.testing.assert_allclose(_memory(rewritten, 2), expected, atol=1e-5)
    seen = np.linalg.norm(expected, axis=1) > 0
    assert seen.any()
    np.testing.assert_allclose(np.linalg.norm(expected[seen], axis=1), 1.0, atol=1e-5)
    tf.keras.backend.clear_session()


def test_negative_rewrite_interval_is_refused(tmp_path):
    proc = run_cli("train", *tiny_args(str(tmp_path / "run"), str(tmp_path / "synth"), "--memory_rewrite_every=-1"))
    assert proc.returncode != 0
    assert "--memory_rewrite_every must be >= 0" in proc.stderr
