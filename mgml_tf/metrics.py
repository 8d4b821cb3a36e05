"""Segmentation metrics in NumPy: confusion matrices, per-class IoU and mIoU (the Cityscapes rule).

``IoU_c = TP / (TP + FP + FN)`` over pixels whose ground truth is not ignored (255). A class with
``TP + FP + FN = 0`` (absent from the ground truth and never predicted) has no IoU: it is reported as NaN and
left out of the mean, as ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`` does
(``getIouScoreForLabel`` returns NaN, ``getScoreAverage`` skips NaNs). Values are reported in percent.

The 16-class protocol of Table 4 (SYNTHIA-compatible) keeps the 19-class predictions and ground truth and
averages over the 16 classes shared with SYNTHIA (terrain, truck and train dropped), as is usual in the
multi-source adaptation literature the table compares with.
"""

import math

import numpy as np

from mgml_tf.data.labels import CLASS_NAMES, IGNORE_ID, SYNTHIA_16_TRAIN_IDS

PROTOCOLS = {19: tuple(range(19)), 16: tuple(SYNTHIA_16_TRAIN_IDS)}


def confusion_matrix(labels, predictions, num_classes, ignore_index=IGNORE_ID):
    """``[num_classes, num_classes]`` int64 counts, rows = ground truth, columns = prediction.

    Pixels whose label is ``ignore_index`` (or outside ``[0, num_classes)``) are skipped; predictions must
    be class indices in ``[0, num_classes)``.
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    predictions = np.asarray(predictions).astype(np.int64).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions differ in size: {labels.size} vs {predictions.size}")
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    if np.any((predictions[valid] < 0) | (predictions[valid] >= num_classes)):
        raise ValueError(f"predictions must be class indices in [0, {num_classes})")
    index = labels[valid] * num_classes + predictions[valid]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion):
    """Per-class IoU in [0, 1] (float64); NaN where ``TP + FP + FN = 0``."""
    confusion = np.asarray(confusion, np.float64)
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), np.nan)


def mean_iou(confusion, classes=None):
    """mIoU in [0, 1] over ``classes`` (default: all), NaN classes excluded; NaN if none is defined."""
    iou = iou_per_class(confusion)
    if classes is not None:
        iou = iou[list(classes)]
    iou = iou[~np.isnan(iou)]
    return float(iou.mean()) if iou.size else float("nan")


def summarize(confusion, num_images, protocol=19, class_names=CLASS_NAMES):
    """``{"mIoU": percent, "IoU": {class: percent or None}, "num_images": n, "protocol": k}``.

    ``protocol`` 19 averages every class of the confusion matrix; 16 averages the SYNTHIA-compatible
    classes (19-class matrices only). Classes without IoU (absent from ground truth and prediction) map to
    None in JSON and are excluded from the mean.
    """
    confusion = np.asarray(confusion)
    n = confusion.shape[0]
    if protocol == 19 or protocol is None:
        classes = tuple(range(n))
    elif protocol == 16:
        if n != 19:
            raise ValueError(f"the 16-class protocol needs 19-class predictions, the model has {n} classes")
        classes = PROTOCOLS[16]
    else:
        raise ValueError(f"unknown class protocol {protocol!r}; choose 19 or 16")
    names = list(class_names) if len(class_names) == n else [f"class_{i}" for i in range(n)]
    iou = iou_per_class(confusion)
    miou = mean_iou(confusion, classes)
    return {
        "mIoU": None if math.isnan(miou) else round(100.0 * miou, 4),
        "IoU": {names[c]: (None if math.isnan(iou[c]) else round(100.0 * float(iou[c]), 4)) for c in classes},
        "num_images": int(num_images),
        "protocol": int(len(classes)),
    }


def format_table(results):
    """A plain-text table: one row per class, one column per target, mIoU last (percent, 1 decimal)."""
    targets = list(results)
    if not targets:
        return "(no targets)"
    classes = list(next(iter(results.values()))["IoU"])
    width = max(14, max(len(t) for t in targets) + 2)
    head = f"{'class':<15}" + "".join(f"{t:>{width}}" for t in targets)
    lines = [head, "-" * len(head)]

    def cell(value):
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.1f}"

    for name in classes:
        lines.append(f"{name:<15}" + "".join(cell(results[t]["IoU"].get(name)) for t in targets))
    lines.append("-" * len(head))
    lines.append(f"{'mIoU':<15}" + "".join(cell(results[t]["mIoU"]) for t in targets))
    lines.append(f"{'images':<15}" + "".join(f"{results[t]['num_images']:>{width}d}" for t in targets))
    return "\n".join(lines)
