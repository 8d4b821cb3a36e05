"""Losses (eqs. 6-7 and the segmentation CE) against NumPy references."""

import numpy as np
import tensorflow as tf

from mgml_tf import losses
from mgml_tf import memory as mem


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_ce(labels, logits, n):
    valid = (labels >= 0) & (labels < n)
    lp = np_log_softmax(logits)
    picked = np.take_along_axis(lp, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return -(picked * valid).sum() / max(valid.sum(), 1)


def test_segmentation_loss_ignores_255():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5, 6))
    labels = rng.integers(0, 6, size=(2, 4, 5))
    labels[0, 0] = 255
    got = losses.segmentation_loss(labels, logits).numpy()
    np.testing.assert_allclose(got, np_ce(labels, logits, 6), rtol=1e-12)
    assert losses.segmentation_loss(np.full((1, 2, 2), 255), logits[:1, :2, :2]).numpy() == 0.0


def test_segmentation_loss_resizes_logits_to_labels():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 2, 2, 3))
    labels = rng.integers(0, 3, size=(1, 4, 4))
    up = tf.image.resize(logits, [4, 4], method="bilinear").numpy()  # float32 whatever its input
    np.testing.assert_allclose(losses.segmentation_loss(labels, logits).numpy(), np_ce(labels, up, 3), rtol=1e-6)


def test_cohesion_is_ce_of_memory_weights():
    """Eq. 6: -sum_j Y[j] log W[j] / (H'W') with W = softmax(q . M^T)."""
    rng = np.random.default_rng(2)
    memory = mem.l2_normalize(tf.constant(rng.normal(size=(4, 6)))).numpy()
    features = rng.normal(size=(2, 3, 3, 6))
    labels = rng.integers(0, 4, size=(2, 3, 3))
    labels[1, 2, 2] = 255
    _, weights = mem.read_memory(memory, features)
    want = -np.mean(
        [
            np.log(weights.numpy()[b, i, j, labels[b, i, j]])
            for b in range(2)
            for i in range(3)
            for j in range(3)
            if labels[b, i, j] != 255
        ]
    )
    got = losses.cohesion_loss(labels, mem.memory_scores(memory, features)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_divergence_terms():
    rng = np.random.default_rng(3)
    memory = mem.l2_normalize(tf.constant(rng.normal(size=(5, 7)))).numpy()
    logits = rng.normal(size=(5, 5))
    want_cls = -np.mean([np_log_softmax(logits)[n, n] for n in range(5)])
    np.testing.assert_allclose(losses.memory_classification_loss(logits).numpy(), want_cls, rtol=1e-12)
    gram = memory @ memory.T
    want_cos = sum(max(gram[i, j], 0.0) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    np.testing.assert_allclose(losses.memory_cosine_loss(memory).numpy(), want_cos, rtol=1e-12)
    # Orthogonal or opposed rows cost nothing.
    assert losses.memory_cosine_loss(np.eye(3)).numpy() == 0.0
    assert losses.memory_cosine_loss(np.array([[1.0, 0.0], [-1.0, 0.0]])).numpy() == 0.0


def test_read_loss_is_eq_8_with_the_weights_given():
    """L_read = seg L_seg + aux L_aux + lambda_1 L_coh, each a mean over the labelled pixels (NumPy); a term
    whose logits are not given is left out of the sum and of the terms."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, size=(2, 6, 7))
    labels[0, :2] = 255
    logits, aux, cohesion = (rng.normal(size=(2, 6, 7, 5)) for _ in range(3))
    weights = losses.LossWeights(seg=0.7, aux=0.3, cohesion=0.05)
    total, terms = losses.read_loss(labels, logits, aux, cohesion, weights)
    want = {name: np_ce(labels, x, 5) for name, x in (("seg", logits), ("aux", aux), ("cohesion", cohesion))}
    assert set(terms) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(terms[name].numpy(), value, rtol=1e-12)
    np.testing.assert_allclose(
        total.numpy(), 0.7 * want["seg"] + 0.3 * want["aux"] + 0.05 * want["cohesion"], rtol=1e-12
    )
    seg_only, seg_terms = losses.read_loss(labels, logits, weights=weights)
    assert set(seg_terms) == {"seg"}
    np.testing.assert_allclose(seg_only.numpy(), 0.7 * want["seg"], rtol=1e-12)


def test_update_loss_is_eq_7_on_m_hat():
    """L_update = w_cls (classification of G(M_hat)) + w_cos (mean positive off-diagonal cosine of M_hat)."""
    rng = np.random.default_rng(5)
    m_hat = mem.l2_normalize(tf.constant(rng.normal(size=(4, 6)))).numpy()
    classifier_logits = rng.normal(size=(4, 4))
    weights = losses.LossWeights(divergence_classification=0.2, divergence_cosine=0.4)
    total, terms = losses.update_loss(m_hat, classifier_logits, weights)
    want_cls = -np.mean([np_log_softmax(classifier_logits)[n, n] for n in range(4)])
    gram = m_hat @ m_hat.T
    want_cos = sum(max(gram[i, j], 0.0) for i in range(4) for j in range(4) if i != j) / (4 * 3)
    np.testing.assert_allclose(terms["div_cls"].numpy(), want_cls, rtol=1e-12)
    np.testing.assert_allclose(terms["div_cos"].numpy(), want_cos, rtol=1e-12)
    np.testing.assert_allclose(total.numpy(), 0.2 * want_cls + 0.4 * want_cos, rtol=1e-12)
