"""mIoU: the confusion matrix and IoU against a loop reference and against cityscapesscripts' evaluator."""

import math
import os

import numpy as np
import pytest

from mgml_tf import metrics


def _reference_iou(labels, preds, n, ignore=255):
    out = []
    for c in range(n):
        tp = fp = fn = 0
        for y, p in zip(labels.ravel(), preds.ravel()):
            if y == ignore:
                continue
            tp += (y == c) and (p == c)
            fp += (y != c) and (p == c)
            fn += (y == c) and (p != c)
        out.append(float("nan") if tp + fp + fn == 0 else tp / (tp + fp + fn))
    return np.array(out)


def test_iou_matches_loop_reference():
    rng = np.random.default_rng(0)
    n = 6
    labels = rng.integers(0, n - 1, size=(3, 17, 23))  # class n-1 never in the ground truth
    preds = rng.integers(0, n - 2, size=labels.shape)  # ... nor predicted -> NaN, excluded
    labels[rng.random(labels.shape) < 0.1] = 255
    conf = metrics.confusion_matrix(labels, preds, n)
    assert conf.sum() == np.sum(labels != 255)
    got = metrics.iou_per_class(conf)
    want = _reference_iou(labels, preds, n)
    np.testing.assert_allclose(got, want, equal_nan=True)
    assert math.isnan(got[n - 1])
    assert metrics.mean_iou(conf) == pytest.approx(np.nanmean(want))


def test_class_in_prediction_only_counts_as_zero():
    labels = np.array([[0, 0, 1, 1]])
    preds = np.array([[0, 2, 1, 1]])
    s = metrics.summarize(metrics.confusion_matrix(labels, preds, 3), 1, class_names=["a", "b", "c"])
    assert s["IoU"] == {"a": 50.0, "b": 100.0, "c": 0.0}
    assert s["mIoU"] == pytest.approx(50.0)


def test_sixteen_class_protocol_drops_terrain_truck_train():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 19, size=(40, 40))
    preds = np.where(rng.random(labels.shape) < 0.7, labels, rng.integers(0, 19, size=labels.shape))
    conf = metrics.confusion_matrix(labels, preds, 19)
    s16 = metrics.summarize(conf, 1, protocol=16)
    assert s16["protocol"] == 16 and len(s16["IoU"]) == 16
    assert not {"terrain", "truck", "train"} & set(s16["IoU"])
    iou = metrics.iou_per_class(conf)
    keep = [c for c in range(19) if c not in (9, 14, 16)]
    assert s16["mIoU"] == pytest.approx(100 * iou[keep].mean(), abs=1e-3)


def test_agrees_with_cityscapesscripts_evaluator(tmp_path):
    """Our label-id PNGs scored by cityscapesscripts give our per-class IoU and mean."""
    pytest.importorskip("cityscapesscripts")
    import tensorflow as tf
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    from mgml_tf import visualize as vis

    rng = np.random.default_rng(2)
    conf = np.zeros((19, 19), np.int64)
    gts, preds = [], []
    for i in range(3):
        train_ids = rng.integers(0, 17, size=(24, 32)).astype(np.uint8)  # motorcycle, bicycle absent
        train_ids[:3] = 255
        pred = np.where(rng.random(train_ids.shape) < 0.6, train_ids, rng.integers(0, 19, size=train_ids.shape))
        pred = np.where(pred == 255, 0, pred).astype(np.uint8)
        pred[pred >= 17] = 3  # never predict motorcycle/bicycle: NaN in both evaluators
        conf += metrics.confusion_matrix(train_ids, pred, 19)
        gt_ids = vis.label_ids(train_ids)
        gt_ids[train_ids == 255] = 0  # unlabeled
        gt_path = os.path.join(tmp_path, f"city_000000_{i:06d}_gtFine_labelIds.png")
        pred_path = os.path.join(tmp_path, f"city_000000_{i:06d}_pred.png")
        tf.io.write_file(gt_path, tf.io.encode_png(gt_ids[..., None]))
        tf.io.write_file(pred_path, tf.io.encode_png(vis.label_ids(pred)[..., None]))
        gts.append(gt_path)
        preds.append(pred_path)
    args = cs.args
    args.quiet = True
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.exportFile = os.path.join(tmp_path, "result.json")
    args.evalLabels = [label.id for label in cs.labels if label.id >= 0 and not label.ignoreInEval]
    result = cs.evaluateImgLists(preds, gts, args)
    ours = metrics.summarize(conf, 3)
    for name, value in ours["IoU"].items():
        theirs = result["classScores"][name]
        if value is None:
            assert math.isnan(theirs), name
        else:
            assert 100 * theirs == pytest.approx(value, abs=1e-3), name
    assert 100 * result["averageScoreClasses"] == pytest.approx(ours["mIoU"], abs=1e-3)


def test_table_lists_every_target():
    conf = np.eye(19, dtype=np.int64)
    res = {"a:x": metrics.summarize(conf, 2), "b:y": metrics.summarize(conf, 3)}
    table = metrics.format_table(res)
    assert "a:x" in table and "b:y" in table and "mIoU" in table and "100.0" in table
