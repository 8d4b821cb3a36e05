"""The categorical memory's maths as pure functions (Sec. 3.2, eqs. 1, 2 and 4).

Nothing here touches a variable: each function maps tensors to tensors, so the meta-learning step can call
them on fast weights and differentiate through them to any order. The layers in ``mgml_tf.layers.memory``
wrap them around the memory variable.

Shapes are channels-last: features ``[B, h, w, C]``, labels ``[B, H, W]`` (int, ``ignore_index`` marks
pixels that carry no class), memory ``[N, C]``.

Labels to the feature grid (the rule eq. 1 needs and the paper leaves open). Eq. 1 averages ``Z`` over the
``K_n`` pixels of class ``n``. Here each label pixel votes for the feature cell that covers it: the one-hot
label map is average-pooled onto the feature grid, so a cell's weight for class ``n`` is the fraction of its
pixels labelled ``n`` (ignored pixels count for no class). When the label size is an integer multiple of the
feature size (the case of training crops, e.g. 768 at output stride 16) this is exact: it is eq. 1 with ``Z``
upsampled by nearest neighbour to label resolution, ``K_n`` the pixel count. Otherwise area resampling
(``tf.image.resize(method="area")``) approximates the same. Labels already at feature resolution are a plain
one-hot. (The reference code instead resizes the one-hot map bilinearly with align_corners=True, which
mixes labels of neighbouring cells at boundaries.)

Two options of the read that are not the paper's method (``memory_score_scale``, ``memory_centering``;
docs/REFERENCE.md, "Options beyond the paper"). In trained models the read of eq. 4 was uniform (entropy 0.999
of the maximum): features are post-ReLU, so the cosines lie in [0, 1], the memory rows are nearly parallel
(mean pairwise cosine 0.98) and the pixel features share one direction, so a pixel's cosines to the N rows
differ by ~0.08 and a softmax at temperature 1 cannot separate the classes.

- Learned score scale (``score_scale``): the read logits are ``s * scores`` with a trainable
  ``s = exp(min(log_s, log 100))`` (as CLIP's logit scale), the same ``s`` scaling the cohesion logits (eq. 6).
- Mean-row centering (``centered_scores``): the cosine of eq. 4 is taken after removing the rows' common
  direction ``m = mean_n M[n]`` from the rows and from the normalised query, each re-normalised:
  ``cos(normalize(q - m), normalize(M[n] - m))``. The read then depends on how the rows differ. The mean is
  over the rows that hold a class (non-zero rows; all rows once every class has been written), and a zero row
  (a class never seen) keeps the score 0 it has without centering. Only the scores change: the readout is
  still ``W^T M`` of the stored rows, and the memory and its update (eqs. 1-2) are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import tensorflow as tf

from mgml_tf.config import MEMORY_CENTERINGS
from mgml_tf.tensor_types import TensorLike

EPSILON = 1e-12
# The largest learned score scale: log_s is clipped to log(100) (as CLIP's logit scale).
MAX_LOG_SCORE_SCALE = math.log(100.0)


def l2_normalize(x: TensorLike, axis: int = -1) -> tf.Tensor:
    """``x / max(||x||, 1e-6)`` along ``axis``; a zero vector stays zero and its gradient stays finite."""
    return tf.math.l2_normalize(x, axis=axis, epsilon=EPSILON)


def class_weights_on_grid(
    labels: TensorLike,
    grid_size: tuple[int, int] | tf.Tensor,
    num_classes: int,
    ignore_index: int = 255,
    dtype: tf.DType | str = tf.float32,
) -> tf.Tensor:
    """Per-cell class fractions ``[B, h, w, N]`` of integer ``labels [B, H, W]`` on a ``(h, w)`` grid.

    See the module docstring for the rule. Labels outside ``[0, N)`` other than ``ignore_index`` are the
    caller's error; here they count for no class, like ``ignore_index``.
    """
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank != 3:
        raise ValueError(f"labels must be [batch, height, width], got shape {labels.shape}")
    h, w = grid_size
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=dtype)  # ignore -> all zeros
    height, width = labels.shape[1], labels.shape[2]
    if (
        height is not None
        and width is not None
        and h is not None
        and w is not None
        and isinstance(h, int)
        and isinstance(w, int)
    ):
        if (height, width) == (h, w):
            return one_hot
        if height % h == 0 and width % w == 0:
            sh, sw = height // h, width // w
            blocks = tf.reshape(one_hot, [-1, h, sh, w, sw, num_classes])
            return tf.reduce_mean(blocks, axis=[2, 4])
    return tf.cast(tf.image.resize(one_hot, [h, w], method="area"), dtype)


def class_feature_sums(
    features: TensorLike, labels: TensorLike, num_classes: int, ignore_index: int = 255
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-class sums of per-pixel L2-normalised ``features`` and the class weights, ``([N, C], [N])``.

    The numerator and ``K_n`` of eq. 1 for one batch. Kept separate from the division so that a
    distribution strategy can all-reduce sums and counts and obtain the single-device update exactly.
    """
    features = tf.convert_to_tensor(features)
    z = l2_normalize(features)
    grid = (
        tf.shape(features)[1:3]
        if features.shape[1] is None or features.shape[2] is None
        else (int(features.shape[1]), int(features.shape[2]))
    )
    y = class_weights_on_grid(labels, grid, num_classes, ignore_index, dtype=z.dtype)
    sums = tf.einsum("bhwn,bhwc->nc", y, z)
    counts = tf.reduce_sum(y, axis=[0, 1, 2])
    return sums, counts


def update_memory_from_sums(
    memory: TensorLike, sums: TensorLike, counts: TensorLike, momentum: float = 0.8
) -> tf.Tensor:
    """Eq. 2 from class sums: ``M[n] <- m M[n] + (1-m) Zhat[n]`` for classes present, rows re-normalised.

    ``Zhat[n] = sums[n] / counts[n]`` (eq. 1). Classes with ``counts[n] == 0`` keep their row. The old memory
    is a constant (``stop_gradient``): gradients reach the features through ``Zhat`` only.
    """
    memory = tf.stop_gradient(tf.convert_to_tensor(memory))
    sums = tf.cast(sums, memory.dtype)
    counts = tf.cast(counts, memory.dtype)
    present = counts > 0
    zhat = sums / tf.maximum(counts, EPSILON)[:, None]
    moved = momentum * memory + (1.0 - momentum) * zhat
    # Absent rows are returned as they are, not re-normalised: a unit row re-normalised every step would
    # drift by rounding over a long run, and a class absent from a whole run must keep its row bit for bit.
    return tf.where(present[:, None], l2_normalize(moved), memory)


def update_memory(
    memory: TensorLike, features: TensorLike, labels: TensorLike, momentum: float = 0.8, ignore_index: int = 255
) -> tf.Tensor:
    """Eqs. 1-2: the memory after writing one batch.

    Args:
      memory: ``[N, C]`` current memory ``M`` (treated as a constant).
      features: ``[B, h, w, C]`` update-network output ``Z = U(F)``, any norm (normalised here per pixel).
      labels: ``[B, H, W]`` integer labels at image or feature resolution; ``ignore_index`` is no class.
      momentum: ``m`` of eq. 2 (0.8 in the paper).

    Returns:
      ``[N, C]`` new memory: per class present in the batch the moving average of eq. 2, other rows as they
      were; every row L2-normalised. Differentiable w.r.t. ``features``.
    """
    memory = tf.convert_to_tensor(memory)
    features = tf.cast(features, memory.dtype)
    sums, counts = class_feature_sums(features, labels, int(memory.shape[0]), ignore_index)
    return update_memory_from_sums(memory, sums, counts, momentum)


def memory_scores(memory: TensorLike, features: TensorLike) -> tf.Tensor:
    """Cosine similarities ``q . M[n]`` ``[B, h, w, N]`` with ``q`` the L2-normalised features (eq. 4, 6)."""
    memory = tf.convert_to_tensor(memory)
    q = l2_normalize(tf.cast(features, memory.dtype))
    return tf.einsum("bhwc,nc->bhwn", q, memory)


def mean_memory_row(memory: TensorLike) -> tf.Tensor:
    """``m = mean_n M[n]`` ``[C]`` over the non-zero rows of ``memory [N, C]`` (zero when every row is zero)."""
    memory = tf.convert_to_tensor(memory)
    present = tf.cast(tf.reduce_any(tf.not_equal(memory, 0), axis=-1), memory.dtype)
    return tf.reduce_sum(memory * present[:, None], axis=0) / tf.maximum(tf.reduce_sum(present), 1.0)


def centered_memory(memory: TensorLike, mean_row: TensorLike | None = None) -> tf.Tensor:
    """``normalize(M[n] - m)`` per non-zero row, zero rows kept zero; ``m`` is ``mean_memory_row(memory)``
    unless given."""
    memory = tf.convert_to_tensor(memory)
    mean_row = mean_memory_row(memory) if mean_row is None else mean_row
    present = tf.reduce_any(tf.not_equal(memory, 0), axis=-1)
    return tf.where(present[:, None], l2_normalize(memory - mean_row), tf.zeros_like(memory))


def centered_scores(memory: TensorLike, features: TensorLike) -> tf.Tensor:
    """Mean-row-centred cosines ``[B, h, w, N]``: ``normalize(q - m) . normalize(M[n] - m)`` with
    ``q = normalize(F)`` and ``m`` the mean non-zero row (module docstring); 0 for a zero row."""
    memory = tf.convert_to_tensor(memory)
    mean_row = mean_memory_row(memory)
    q = l2_normalize(l2_normalize(tf.cast(features, memory.dtype)) - mean_row)
    return tf.einsum("bhwc,nc->bhwn", q, centered_memory(memory, mean_row))


def read_scores(memory: TensorLike, features: TensorLike, centering: str = "none") -> tf.Tensor:
    """The cosines the read starts from: ``memory_scores`` (``centering="none"``, eq. 4) or
    ``centered_scores`` (``"mean_row"``)."""
    if centering == "none":
        return memory_scores(memory, features)
    if centering == "mean_row":
        return centered_scores(memory, features)
    raise ValueError(f"unknown memory_centering {centering!r}; choose one of {list(MEMORY_CENTERINGS)}")


def score_scale(log_scale: TensorLike) -> tf.Tensor:
    """The learned scale ``s = exp(min(log_s, log 100))`` that multiplies the cosine scores."""
    log_scale = tf.convert_to_tensor(log_scale)
    return tf.exp(tf.minimum(log_scale, tf.constant(MAX_LOG_SCORE_SCALE, log_scale.dtype)))


def read_memory(
    memory: TensorLike,
    features: TensorLike,
    gumbel_noise: TensorLike | None = None,
    temperature: float = 1.0,
    scale: TensorLike | None = None,
    centering: str = "none",
) -> tuple[tf.Tensor, tf.Tensor]:
    """Eq. 4 and the readout of eq. 5: ``W = softmax_n(q . M[n])``, ``readout = W^T M``.

    Args:
      memory: ``[N, C]`` memory with unit (or zero) rows.
      features: ``[B, h, w, C]`` encoder features ``F`` (normalised here per pixel).
      gumbel_noise: optional ``[B, h, w, N]`` Gumbel(0, 1) samples; when given, the weights are the
        Gumbel-softmax ``softmax((scores + g) / temperature)`` (the reference's training read).
      temperature: softmax temperature (1 in the paper).
      scale: optional scalar tensor ``s`` (the learned score scale): the logits are ``s * scores``, then
        ``+ g``, then ``/ temperature`` (the model passes temperature 1 with a scale). None: ``scores``.
      centering: ``"none"`` (eq. 4) or ``"mean_row"`` (``centered_scores``); the readout is ``W^T M`` either way.

    Returns:
      ``(readout [B, h, w, C], weights [B, h, w, N])``.
    """
    readout, weights, _ = read_memory_with_scores(memory, features, gumbel_noise, temperature, scale, centering)
    return readout, weights


def read_memory_with_scores(
    memory: TensorLike,
    features: TensorLike,
    gumbel_noise: TensorLike | None = None,
    temperature: float = 1.0,
    scale: TensorLike | None = None,
    centering: str = "none",
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``read_memory`` that also returns the scores (for eq. 6): ``(readout, weights, scores)``; ``scores``
    are the cosines before any scale or temperature (centred ones with ``centering="mean_row"``)."""
    memory = tf.convert_to_tensor(memory)
    scores = read_scores(memory, features, centering)
    logits = scores if scale is None else tf.cast(scale, scores.dtype) * scores
    if gumbel_noise is not None:
        logits = logits + tf.cast(gumbel_noise, scores.dtype)
    weights = tf.nn.softmax(logits / temperature, axis=-1)
    readout = tf.einsum("bhwn,nc->bhwc", weights, memory)
    return readout, weights, scores


def memory_from_sums(sums: TensorLike, counts: TensorLike) -> tf.Tensor:
    """Class-mean initial memory: ``sums[n] / counts[n]`` with rows L2-normalised; unseen classes get 0."""
    sums = tf.convert_to_tensor(sums)
    counts = tf.cast(counts, sums.dtype)
    means = sums / tf.maximum(counts, EPSILON)[:, None]
    return l2_normalize(tf.where((counts > 0)[:, None], means, tf.zeros_like(means)))


def initial_memory(
    feature_label_batches: Iterable[tuple[TensorLike, TensorLike]],
    num_classes: int,
    ignore_index: int = 255,
    dtype: tf.DType | str = tf.float32,
) -> tf.Tensor:
    """Initial memory from an iterable of ``(features [B,h,w,C], labels [B,H,W])`` (Sec. 3.2).

    Per class, the mean of the L2-normalised encoder features over all pixels of that class in all batches
    (labels brought to the feature grid by the module's rule), then rows L2-normalised; a class never seen
    gets a zero row. Features are those of the encoder, before the update network.
    """
    sums, counts = None, None
    for features, labels in feature_label_batches:
        s, c = class_feature_sums(tf.cast(features, dtype), labels, num_classes, ignore_index)
        sums, counts = (s, c) if sums is None else (sums + s, counts + c)
    if sums is None:
        raise ValueError("initial_memory got no batches: pass at least one (features, labels) batch")
    return memory_from_sums(sums, counts)
