"""mgml_tf.evaluation: the settings' window sizes, the per-image and per-target callbacks, and the trainer's
evaluation and ``python -m mgml_tf.evaluate`` giving the same table for the same checkpoint and targets."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.evaluation import EvaluatedImage, EvaluationSettings, parse_window_size
from tests.cli_helpers import run_cli, tiny_args


# ------------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    "given, expected",
    [
        (["512", "1024"], (512, 1024)),  # --window_size=512,1024
        (["96"], (96, 96)),  # --window_size=96: a square window
        ([64, 128], (64, 128)),
        ((80,), (80, 80)),
        (48, (48, 48)),
        ("64,32", (64, 32)),
        ("72", (72, 72)),
    ],
)
def test_window_size_is_height_width_ints(given, expected):
    assert parse_window_size(given) == expected
    settings = EvaluationSettings(sliding_window=True, window_size=given)
    assert settings.window_size == expected
    assert all(type(s) is int for s in settings.window_size)


@pytest.mark.parametrize("given", [[], ["1", "2", "3"], ["a"], [0, 64], "64,-1", None])
def test_bad_window_sizes_refused(given):
    with pytest.raises(ValueError, match="window_size"):
        EvaluationSettings(window_size=given)


def test_settings_are_frozen_and_checked():
    settings = EvaluationSettings()
    assert settings.window_size == (512, 1024) and settings.ignore_index == 255
    with pytest.raises(AttributeError):
        settings.flip = True
    for bad in (dict(window_overlap=1.0), dict(num_classes_protocol=17), dict(max_images=-1)):
        with pytest.raises(ValueError):
            EvaluationSettings(**bad)


def test_settings_from_flags_match_the_old_parsings():
    """from_flags reads --window_size as the configuration does (EvaluationConfig.window) and the trainer's inline
    parsing (one size doubled) did; describe() is the evaluate command's mode text."""
    from absl import flags

    from mgml_tf.cli import flags as flags_lib

    for argv, mode in (
        (["--window_size=96"], "whole image"),
        (["--sliding_window", "--window_size=64,128", "--flip"], "sliding window (64, 128) + flip"),
        (["--sliding_window", "--num_classes_protocol=16", "--max_eval_images=3"], "sliding window (512, 1024)"),
    ):
        fv = flags.FlagValues()
        flags_lib.define_eval_flags(fv)
        fv(["prog", *argv])
        settings = EvaluationSettings.from_flags(fv, ignore_index=254)
        assert settings.window_size == flags_lib.validate_eval_flags(fv).window
        inline = tuple(int(w) for w in (fv.window_size * 2 if len(fv.window_size) == 1 else fv.window_size))
        assert settings.window_size == inline
        assert settings.describe() == mode
        assert settings.sliding_window == fv.sliding_window and settings.flip == fv.flip
        assert settings.window_overlap == fv.window_overlap
        assert settings.num_classes_protocol == int(fv.num_classes_protocol)
        assert settings.max_images == fv.max_eval_images and settings.ignore_index == 254


# ----------------------------------------------------------------------------------- evaluate_targets
def test_evaluate_targets_callbacks_and_table(tmp_path):
    import mgml_tf
    from mgml_tf import metrics
    from mgml_tf.data import evaluation_dataset, load_domain
    from mgml_tf.evaluation import Predictor, evaluate_domain, evaluate_targets
    from mgml_tf.synthetic.streets import write_dataset

    write_dataset("foggy", "cityscapes", 3, str(tmp_path / "cs"), height=48, width=64, split="val")
    write_dataset("night", "bdd100k", 3, str(tmp_path / "bdd"), height=48, width=64, split="val")
    targets = [
        load_domain("cityscapes", str(tmp_path / "cs"), "val"),
        load_domain("bdd100k", str(tmp_path / "bdd"), "val"),
    ]
    model = mgml_tf.build_model(backbone="resnet_small", num_classes=19, feature_channels=16, decoder_channels=16)
    settings = EvaluationSettings(sliding_window=True, window_size=(32, 48), flip=True, max_images=2)
    images, done = [], []
    results = evaluate_targets(
        model,
        targets,
        settings,
        step=7,
        on_image=images.append,
        on_target=lambda label, result: done.append((label, dict(result))),
    )
    labels = ["cityscapes:cs", "bdd100k:bdd"]
    assert list(results) == labels and [d[0] for d in done] == labels
    assert all(results[label] == result for label, result in done)
    assert [(s.target, s.index) for s in images] == [(t, i) for t in labels for i in range(2)]
    for s in images:
        assert isinstance(s, EvaluatedImage)
        domain = targets[labels.index(s.target)]
        assert s.path == domain.pairs[s.index][0]
        assert s.image.shape == (48, 64, 3) and s.label.shape == s.prediction.shape == (48, 64)
    # The table is evaluate_domain + summarize with the same predictor settings.
    predictor = Predictor(model, True, (32, 48), 1.0 / 3.0, True)
    for domain, label in zip(targets, labels):
        confusion, n = evaluate_domain(predictor, evaluation_dataset(domain), 19, 255, 2)
        assert results[label] == {**metrics.summarize(confusion, n, 19), "step": 7}
    assert "step" not in evaluate_targets(model, targets[:1], EvaluationSettings(max_images=1))["cityscapes:cs"]
    small = mgml_tf.build_model(backbone="resnet_small", num_classes=5, feature_channels=16, decoder_channels=16)
    with pytest.raises(ValueError, match="16-class protocol needs 19-class"):
        evaluate_targets(small, targets, EvaluationSettings(num_classes_protocol=16))


# ------------------------------------------------------------------------- trainer vs evaluate command
@pytest.mark.slow  # trains, then runs the evaluate command
def test_trainer_and_evaluate_command_give_the_same_table(tmp_path):
    """The final evaluation of a tiny run (eval_results.json, sliding window + flip on every default
    target) and ``mgml_tf.evaluate`` on its newest checkpoint with the same settings: the same JSON."""
    model_dir, synth = str(tmp_path / "run"), str(tmp_path / "synth")
    settings = ("--sliding_window", "--window_size=80,64", "--window_overlap=0.25", "--flip")
    train = run_cli("train", *tiny_args(model_dir, synth, *settings), check=True)
    trained = json.load(open(os.path.join(model_dir, "eval_results.json")))
    out_json = str(tmp_path / "ev.json")
    proc = run_cli("evaluate", f"--model_dir={model_dir}", f"--output_json={out_json}", *settings, check=True)
    evaluated = json.load(open(out_json))
    assert len(trained) == 3 and all(r["step"] == 3 and r["num_images"] == 2 for r in trained.values())
    assert evaluated == trained
    assert "sliding window (80, 64) + flip, 19-class mIoU" in proc.stdout
    # Both print the same table.
    from mgml_tf.metrics import format_table

    table = format_table(trained)
    assert table in train.stdout and table in proc.stdout
    assert np.isfinite([r["mIoU"] for r in trained.values()]).all()


@pytest.mark.parametrize("sliding_window", [False, True])
def test_eval_resize_infers_at_the_reduced_size_and_answers_at_full_size(sliding_window):
    """--eval_resize=32,48: a 64x128 image is inferred at 24x48 (ratio kept, within 32x48), whole or in
    windows, and its probabilities resized back to 64x128."""
    from mgml_tf.evaluation import Predictor
    from tests.helpers import small_model

    model = small_model()
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 128, 3)).astype(np.float32)
    predictor = Predictor(model, sliding_window=sliding_window, window_size=(32, 32), resize=(32, 48))
    got = predictor.probabilities(image)
    small = tf.image.resize(image, (24, 48), "bilinear")
    inner = Predictor(model, sliding_window=sliding_window, window_size=(32, 32)).probabilities(small)
    want = tf.image.resize(inner, (64, 128), "bilinear").numpy()
    assert got.shape == (1, 64, 128, model.num_classes)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert EvaluationSettings(resize=["32", "48"]).resize == (32, 48) and EvaluationSettings().resize == ()
