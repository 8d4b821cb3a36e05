"""Shared builders for model tests: small models and a tiny two-domain segmentation problem."""

import keras
import numpy as np
import tensorflow as tf

import mgml_tf
from mgml_tf import memory as memory_ops
from tools.tiny_vit_preset import tiny_vit_preset  # noqa: F401 (the tests' tiny keras-hub ViT)

NUM_CLASSES = 4
SMALL = dict(
    backbone="resnet_small",
    num_classes=NUM_CLASSES,
    feature_channels=8,
    decoder_channels=8,
    low_level_channels=4,
    aspp_rates=(1, 2, 3),
    dropout=0.0,
)


def small_model(float64=False, **options):
    """A small MemorySegmenter (resnet_small, 8 feature channels); float64 for gradient checks."""
    if float64:
        keras.config.set_floatx("float64")
        keras.config.set_dtype_policy("float64")
    keras.utils.set_random_seed(options.pop("init_seed", 0))
    model = mgml_tf.build_model(**{**SMALL, **options})
    if model.use_memory:
        rng = np.random.default_rng(1)
        value = memory_ops.l2_normalize(tf.constant(rng.normal(size=model.memory.shape))).numpy()
        model.memory.assign(value.astype(model.memory.dtype))
    return model


def scene_batch(rng, batch, size=32, domain=0, num_classes=NUM_CLASSES, ignore_fraction=0.05):
    """Images whose classes are vertical bands of a class colour; a domain shifts and scales colours.

    Returns float images in 0..255 ``[B, S, S, 3]`` and int32 labels ``[B, S, S]`` with a few 255s.
    """
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], np.float64)[:num_classes]
    gain = [1.0, 0.6, 0.8][domain % 3]
    offset = [0.0, 60.0, -20.0][domain % 3]
    labels = np.zeros((batch, size, size), np.int32)
    for b in range(batch):
        cuts = np.sort(rng.choice(np.arange(4, size - 4), size=num_classes - 1, replace=False))
        order = rng.permutation(num_classes)
        bands = np.searchsorted(cuts, np.arange(size), side="right")
        labels[b] = order[bands][None, :]
    images = base[labels] * gain + offset + rng.normal(scale=8.0, size=labels.shape + (3,))
    images = np.clip(images, 0, 255)
    labels[rng.random(labels.shape) < ignore_fraction] = 255
    return images.astype(np.float32), labels


def episode(rng, batch=2, size=32, train_domain=0, test_domain=1, dtype=np.float32):
    x_tr, y_tr = scene_batch(rng, batch, size, train_domain)
    x_te, y_te = scene_batch(rng, batch, size, test_domain)
    return (tf.constant(x_tr.astype(dtype)), tf.constant(y_tr)), (tf.constant(x_te.astype(dtype)), tf.constant(y_te))


def episode_dataset(seed, steps, batch=2, size=32, domains=(0, 1), vary_batch=False):
    """A finite tf.data episode stream over ``domains`` with a random split each step (batch dim None);
    ``vary_batch`` doubles the meta-train batch on some steps (as 1..D-1 meta-train domains do)."""
    rng = np.random.default_rng(seed)
    elements = []
    for _ in range(steps):
        tr, te = rng.permutation(domains)[:2]
        x_tr, y_tr = scene_batch(rng, batch * (1 + int(vary_batch and rng.random() < 0.5)), size, tr)
        x_te, y_te = scene_batch(rng, batch, size, te)
        elements.append(((x_tr, y_tr), (x_te, y_te)))

    def gen():
        yield from elements

    spec = (
        (tf.TensorSpec([None, size, size, 3], tf.float32), tf.TensorSpec([None, size, size], tf.int32)),
        (tf.TensorSpec([None, size, size, 3], tf.float32), tf.TensorSpec([None, size, size], tf.int32)),
    )
    return tf.data.Dataset.from_generator(gen, output_signature=spec)
