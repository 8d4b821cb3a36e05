"""The evaluate CLI agrees with the official Cityscapes evaluator on the same predictions.

A tiny run (configs/demo_tiny.cfg, 3 steps) is trained, then ``python -m mgml_tf.evaluate`` scores the synthetic
Cityscapes-layout target at full resolution (whole image, no flip, no sliding window) and writes its
predictions as Cityscapes label-id PNGs (``--save_predictions``). ``cityscapesscripts``'
``evalPixelLevelSemanticLabeling`` then scores those PNGs against the target's ``*_gtFine_labelIds.png``
files on disk; its class IoUs and mean must equal the CLI's (``--output_json``) within 0.01 points.
"""

import glob
import json
import math
import os

import numpy as np
import pytest

from tests.cli_helpers import run_cli, tiny_args

# A trained model evaluated at full resolution.
pytestmark = pytest.mark.slow

TARGET = "foggy"  # the synthetic target written in the Cityscapes layout


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    pytest.importorskip("cityscapesscripts")
    base = tmp_path_factory.mktemp("agreement")
    model_dir, synth = str(base / "run"), str(base / "synth")
    run_cli("train", *tiny_args(model_dir, synth), check=True)  # 3 steps; predicts many classes
    root = os.path.join(synth, TARGET)
    out_json, preds = str(base / "eval.json"), str(base / "preds")
    run_cli(
        "evaluate",
        f"--model_dir={model_dir}",
        f"--targets=cityscapes:{root}",
        f"--output_json={out_json}",
        f"--save_predictions={preds}",
        check=True,
    )
    results = json.load(open(out_json))
    assert list(results) == [f"cityscapes:{TARGET}"]
    return {"root": root, "preds": os.path.join(preds, f"cityscapes_{TARGET}"), "ours": results[f"cityscapes:{TARGET}"]}


def _pairs(evaluated):
    """(prediction PNG, ground-truth PNG) of every target image, matched by the Cityscapes file stem."""
    gts = sorted(glob.glob(os.path.join(evaluated["root"], "gtFine", "val", "*", "*_gtFine_labelIds.png")))
    preds = sorted(glob.glob(os.path.join(evaluated["preds"], "*_labelIds.png")))
    by_stem = {os.path.basename(p)[: -len("_leftImg8bit_labelIds.png")]: p for p in preds}
    pairs = [(by_stem[os.path.basename(g)[: -len("_gtFine_labelIds.png")]], g) for g in gts]
    assert len(pairs) == len(preds) == evaluated["ours"]["num_images"] >= 2
    return pairs


def _read(path):
    import tensorflow as tf

    return tf.io.decode_png(tf.io.read_file(path)).numpy()[..., 0]


def test_predictions_are_full_resolution_and_not_trivial(evaluated):
    predicted, present = set(), set()
    for pred, gt in _pairs(evaluated):
        p, g = _read(pred), _read(gt)
        assert p.shape == g.shape
        predicted |= set(np.unique(p).tolist())
        present |= set(np.unique(g).tolist())
    assert len(predicted) >= 2, predicted  # a constant prediction would make the check nearly vacuous
    assert len(present) >= 5, present


def test_miou_and_class_iou_agree_with_cityscapesscripts(evaluated, tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    pairs = _pairs(evaluated)
    args = cs.args
    args.quiet = True
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.exportFile = str(tmp_path / "result.json")
    args.evalLabels = [label.id for label in cs.labels if label.id >= 0 and not label.ignoreInEval]
    result = cs.evaluateImgLists([p for p, _ in pairs], [g for _, g in pairs], args)
    ours = evaluated["ours"]
    assert len(ours["IoU"]) == 19
    for name, value in ours["IoU"].items():
        theirs = result["classScores"][name]
        if value is None:  # absent from prediction and ground truth
            assert math.isnan(theirs), (name, theirs)
        else:
            assert 100 * theirs == pytest.approx(value, abs=0.01), name
    assert 100 * result["averageScoreClasses"] == pytest.approx(ours["mIoU"], abs=0.01)
