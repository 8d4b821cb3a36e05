"""Tensor operations shared by the losses and the layers, differentiable to any order.

``resize_bilinear`` is bilinear resizing as two interpolation-matrix products. TensorFlow's
``ResizeBilinearGrad`` has no registered gradient, so ``tf.image.resize(..., "bilinear")`` silently drops
the second derivative (a meta-gradient through it is wrong without any error), and it returns float32 even
for float64 input (which spoils float64 finite-difference checks). Every bilinear resize on a path that the
meta step differentiates goes through this function.
"""

import tensorflow as tf


def _interpolation_matrix(in_size, out_size, align_corners, dtype):
    """``[out_size, in_size]`` linear-interpolation weights (``tf.image.resize`` bilinear conventions)."""
    in_f = tf.cast(in_size, tf.float32)
    out_f = tf.cast(out_size, tf.float32)
    dst = tf.range(out_f, dtype=tf.float32)
    if align_corners:
        scale = tf.where(out_f > 1, (in_f - 1) / tf.maximum(out_f - 1, 1), 0.0)
        src = dst * scale
    else:  # half-pixel centres, as tf.image.resize / torch align_corners=False
        src = tf.maximum((dst + 0.5) * (in_f / out_f) - 0.5, 0.0)
    lower = tf.floor(src)
    frac = src - lower
    lower = tf.cast(lower, tf.int32)
    lower = tf.minimum(lower, in_size - 1)
    upper = tf.minimum(lower + 1, in_size - 1)
    frac = tf.cast(frac, dtype)[:, None]
    return tf.one_hot(lower, in_size, dtype=dtype) * (1 - frac) + tf.one_hot(upper, in_size, dtype=dtype) * frac


def resize_bilinear(images, size, align_corners=False):
    """Bilinear resize of ``[B, H, W, C]`` to ``size = (h, w)`` (ints or scalar tensors), any float dtype.

    Equal to ``tf.image.resize(images, size, "bilinear")`` (``align_corners=False``: half-pixel centres,
    no antialiasing) or to the ``align_corners=True`` convention, but built from two matrix products, so
    it is differentiable to any order and deterministic. Output dtype = input dtype.
    """
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    out_h, out_w = size[0], size[1]
    rows = _interpolation_matrix(shape[1], out_h, align_corners, images.dtype)
    cols = _interpolation_matrix(shape[2], out_w, align_corners, images.dtype)
    x = tf.einsum("oh,bhwc->bowc", rows, images)
    x = tf.einsum("pw,bowc->bopc", cols, x)
    static_h = out_h if isinstance(out_h, int) else None
    static_w = out_w if isinstance(out_w, int) else None
    return tf.ensure_shape(x, [images.shape[0], static_h, static_w, images.shape[-1]])


def sync_replica_context():
    """The replica context when running in ``strategy.run`` with more than one replica, else None.

    Code that must see the whole global batch (class sums of the memory update, pixel counts of the losses,
    inner gradients of the meta step) all-reduces through it; on one device it does nothing."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def all_reduce_sum(value):
    """Sum of ``value`` over the replicas in sync (identity on one device); differentiable to any order:
    the gradient of an all-reduced sum is the all-reduced sum of the incoming gradients."""
    context = sync_replica_context()
    if context is None:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
