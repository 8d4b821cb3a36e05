"""Losses of Sec. 3.3 as pure functions (eqs. 6-8) with the reference code's weights as defaults.

Functional on purpose: Keras ``Loss`` objects divide by the replica count inside a replica context, which
would silently shrink the inner learning rate of the meta step (docs/DESIGN.md#keras-loss-objects-under-a-strategy).
Every function returns the mean over the pixels (or rows) it averages, in float32 (float64 under a float64
policy).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from mgml_tf.ops import all_reduce_sum, resize_bilinear, sync_replica_context
from mgml_tf.tensor_types import TensorLike

# Defaults of the reference implementation (docs/DESIGN.md#loss-weights).
SEG_WEIGHT = 1.0
AUX_WEIGHT = 0.4
COHESION_WEIGHT = 0.02
DIVERGENCE_CLASSIFICATION_WEIGHT = 0.2
DIVERGENCE_COSINE_WEIGHT = 0.4


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The factors of eq. 8's terms: ``L_read = seg L_seg + aux L_aux + cohesion L_coh`` (``lambda_1 =
    cohesion``) and ``L_update = divergence_classification L_cls + divergence_cosine L_cos`` (eq. 7 with
    ``lambda_2`` folded into both factors, as the reference weighs them)."""

    seg: float = SEG_WEIGHT
    aux: float = AUX_WEIGHT
    cohesion: float = COHESION_WEIGHT
    divergence_classification: float = DIVERGENCE_CLASSIFICATION_WEIGHT
    divergence_cosine: float = DIVERGENCE_COSINE_WEIGHT


DEFAULT_WEIGHTS = LossWeights()


def _loss_dtype(x):
    return tf.float64 if x.dtype == tf.float64 else tf.float32


def pixel_cross_entropy_sum(
    labels: TensorLike, logits: TensorLike, ignore_index: int = 255
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(sum of per-pixel CE over labelled pixels, number of labelled pixels)``.

    ``logits [B, h, w, N]`` are resized bilinearly to the labels' ``[B, H, W]`` when their sizes differ.
    Labels equal to ``ignore_index`` (or outside ``[0, N)``) carry no loss. The sum/count form lets a
    distribution strategy normalise by the global pixel count.
    """
    logits = tf.convert_to_tensor(logits)
    logits = tf.cast(logits, _loss_dtype(logits))
    labels = tf.cast(labels, tf.int32)
    num_classes = logits.shape[-1]
    if logits.shape[1:3] != labels.shape[1:3] or labels.shape[1] is None:
        logits = resize_bilinear(logits, tf.shape(labels)[1:3])
    valid = tf.logical_and(labels >= 0, labels < num_classes)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    mask = tf.cast(valid, ce.dtype)
    return tf.reduce_sum(ce * mask), tf.reduce_sum(mask)


def segmentation_loss(labels: TensorLike, logits: TensorLike, ignore_index: int = 255) -> tf.Tensor:
    """``L_seg``: mean per-pixel cross-entropy over labelled pixels; 0 when no pixel is labelled."""
    total, count = pixel_cross_entropy_sum(labels, logits, ignore_index)
    return total / tf.maximum(count, 1.0)


def cohesion_loss(
    labels: TensorLike, scores: TensorLike, ignore_index: int = 255, temperature: float = 1.0
) -> tf.Tensor:
    """``L_coh`` (eq. 6): cross-entropy of the memory weights ``W = softmax(scores / T)`` against labels.

    ``scores [B, h, w, N]`` are the cosine similarities ``q . M^T`` (``mgml_tf.memory.memory_scores``);
    as in the reference they are resized to label resolution before the cross-entropy.
    """
    return segmentation_loss(labels, scores / temperature, ignore_index)


def memory_classification_loss(classifier_logits: TensorLike) -> tf.Tensor:
    """First term of eq. 7: mean over rows of ``-log G(M_hat[n])[n]`` (row ``n`` should be class ``n``)."""
    logits = tf.convert_to_tensor(classifier_logits)
    logits = tf.cast(logits, _loss_dtype(logits))
    targets = tf.range(tf.shape(logits)[0])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits))


def memory_cosine_loss(memory: TensorLike) -> tf.Tensor:
    """Second term of eq. 7 (without its factor): ``sum_{n != n'} relu(M[n] . M[n']) / (N (N - 1))``."""
    memory = tf.convert_to_tensor(memory)
    n = tf.cast(tf.shape(memory)[0], memory.dtype)
    gram = tf.matmul(memory, memory, transpose_b=True)
    off_diagonal = gram - tf.linalg.diag(tf.linalg.diag_part(gram))
    return tf.reduce_sum(tf.nn.relu(off_diagonal)) / (n * (n - 1.0))


def _weighted_sum(terms: dict[str, tf.Tensor], factors: dict[str, float]) -> tf.Tensor:
    return tf.add_n([float(factors[name]) * value for name, value in terms.items()])


def read_loss(
    labels: TensorLike,
    logits: TensorLike,
    aux_logits: TensorLike | None = None,
    cohesion_logits: TensorLike | None = None,
    weights: LossWeights = DEFAULT_WEIGHTS,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """``L_read`` (eq. 8) of one batch: ``(seg L_seg + aux L_aux + cohesion L_coh, {"seg", "aux", "cohesion"})``.

    ``L_seg`` on ``logits``, the auxiliary head's cross-entropy on ``aux_logits`` and ``L_coh`` (eq. 6) on
    ``cohesion_logits``; a term whose logits are None is left out. Each term is a sum over this batch's
    labelled pixels divided by the labelled pixels of the global batch: under a distribution strategy the
    replicas' terms add up to the single-device value (``mgml_tf.ops.all_reduce_sum``; on one device, the mean).
    """
    seg_sum, count = pixel_cross_entropy_sum(labels, logits)
    count = tf.maximum(all_reduce_sum(tf.stop_gradient(count)), 1.0)
    terms = {"seg": seg_sum / count}
    for name, term_logits in (("aux", aux_logits), ("cohesion", cohesion_logits)):
        if term_logits is not None:
            terms[name] = pixel_cross_entropy_sum(labels, term_logits)[0] / count
    factors = {"seg": weights.seg, "aux": weights.aux, "cohesion": weights.cohesion}
    return _weighted_sum(terms, factors), terms


def update_loss(
    m_hat: TensorLike, classifier_logits: TensorLike, weights: LossWeights = DEFAULT_WEIGHTS
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """``L_update = lambda_2 L_div`` (eqs. 7-8) of the updated memory ``M_hat``: ``(total, {"div_cls", "div_cos"})``.

    ``classifier_logits`` are the memory classifier's ``G(M_hat)``. Every replica of a distribution strategy
    holds the same ``M_hat``, so each term is divided by the replica count: summed over replicas, the
    single-device value.
    """
    context = sync_replica_context()
    replicas = float(context.num_replicas_in_sync) if context is not None else 1.0
    terms = {
        "div_cls": memory_classification_loss(classifier_logits) / replicas,
        "div_cos": memory_cosine_loss(m_hat) / replicas,
    }
    factors = {"div_cls": weights.divergence_classification, "div_cos": weights.divergence_cosine}
    return _weighted_sum(terms, factors), terms
