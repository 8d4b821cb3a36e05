"""Pictures of predictions (NumPy + tf.io): colour masks, overlays, memory activation maps, PNG files."""

import numpy as np

from mgml_tf.data.labels import CITYSCAPES_CLASSES, TRAIN_ID_COLORS

#: train id -> Cityscapes label id (for prediction PNGs that cityscapesscripts scores).
TRAIN_ID_TO_LABEL_ID = np.array([c.label_id for c in CITYSCAPES_CLASSES], np.uint8)


def colorize(train_ids, num_classes=None):
    """uint8 ``[..., 3]`` Cityscapes colours of a train-id map; ids outside the palette are black."""
    ids = np.asarray(train_ids).astype(np.int64)
    palette = TRAIN_ID_COLORS
    if num_classes is not None and num_classes > len(palette):
        rng = np.random.default_rng(0)
        extra = rng.integers(0, 256, size=(num_classes - len(palette), 3), dtype=np.uint8)
        palette = np.concatenate([palette, extra])
    out = np.zeros(ids.shape + (3,), np.uint8)
    valid = (ids >= 0) & (ids < len(palette))
    out[valid] = palette[ids[valid]]
    return out


def overlay(image, color, alpha=0.5):
    """``alpha`` blend of a uint8 image and its colour mask."""
    image = np.asarray(image, np.float32)
    return np.clip((1 - alpha) * image + alpha * np.asarray(color, np.float32), 0, 255).astype(np.uint8)


def heatmap(values):
    """uint8 RGB ``[H, W, 3]`` of values in [0, 1] (black -> blue -> red -> yellow -> white)."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    stops = np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32)
    colors = np.array([[0, 0, 0], [40, 0, 160], [220, 30, 60], [255, 200, 0], [255, 255, 255]], np.float32)
    out = np.stack([np.interp(v, stops, colors[:, c]) for c in range(3)], axis=-1)
    return out.astype(np.uint8)


def label_ids(train_ids):
    """Cityscapes label ids (uint8) of a train-id map (ids outside 0..18 -> 0, 'unlabeled')."""
    ids = np.asarray(train_ids).astype(np.int64)
    out = np.zeros(ids.shape, np.uint8)
    valid = (ids >= 0) & (ids < len(TRAIN_ID_TO_LABEL_ID))
    out[valid] = TRAIN_ID_TO_LABEL_ID[ids[valid]]
    return out


def encode_png(array):
    import tensorflow as tf

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    return tf.io.encode_png(array).numpy()
