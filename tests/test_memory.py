"""The memory maths (eqs. 1, 2, 4 and the class-mean initialisation) against plain NumPy references."""

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf import memory as mem

N, C = 5, 8
IGNORE = 255


def np_normalize(x, axis=-1):
    norm = np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    return x / np.maximum(norm, 1e-12)


def np_update(memory, features, labels, momentum):
    """Eqs. 1-2 written out pixel by pixel: Z upsampled to label resolution by nearest neighbour (each
    label pixel takes the feature of the cell covering it), per-class mean over the K_n labelled pixels,
    moving average for present classes, rows normalised."""
    b, h, w, c = features.shape
    _, H, W = labels.shape
    z = np_normalize(features)
    z_up = np.repeat(np.repeat(z, H // h, axis=1), W // w, axis=2)
    out = memory.copy()
    for n in range(memory.shape[0]):
        mask = labels == n
        k = mask.sum()
        if k == 0:
            continue
        zhat = z_up[mask].sum(axis=0) / k
        out[n] = momentum * memory[n] + (1 - momentum) * zhat
    return np_normalize(out)


def random_memory(rng, n=N, c=C):
    return np_normalize(rng.normal(size=(n, c)))


def random_labels(rng, shape, classes, ignore_fraction=0.2):
    labels = rng.choice(classes, size=shape)
    labels[rng.random(shape) < ignore_fraction] = IGNORE
    return labels


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_update_matches_numpy(scale):
    rng = np.random.default_rng(scale)
    memory = random_memory(rng)
    features = rng.normal(size=(2, 3, 4, C))
    labels = random_labels(rng, (2, 3 * scale, 4 * scale), [0, 1, 3])  # classes 2 and 4 absent
    got = mem.update_memory(tf.constant(memory), tf.constant(features), tf.constant(labels), 0.8).numpy()
    want = np_update(memory, features, labels, 0.8)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(got[[2, 4]], memory[[2, 4]])  # absent classes: bit for bit
    assert not np.allclose(got[[0, 1, 3]], memory[[0, 1, 3]])


def test_update_float32_and_momentum():
    rng = np.random.default_rng(7)
    memory = random_memory(rng).astype(np.float32)
    features = rng.normal(size=(3, 4, 4, C)).astype(np.float32)
    labels = random_labels(rng, (3, 8, 8), range(N))
    for m in (0.0, 0.5, 0.8, 0.99):
        got = mem.update_memory(memory, features, labels, momentum=m).numpy()
        np.testing.assert_allclose(
            got, np_update(memory.astype(np.float64), features.astype(np.float64), labels, m), atol=2e-6
        )


def test_all_ignore_batch_leaves_memory_and_no_nan():
    rng = np.random.default_rng(1)
    memory = random_memory(rng)
    memory[3] = 0.0  # a class never seen: zero row
    features = rng.normal(size=(2, 4, 4, C))
    labels = np.full((2, 16, 16), IGNORE)
    got = mem.update_memory(memory, features, labels).numpy()
    np.testing.assert_allclose(got, memory, atol=1e-15)
    assert np.isfinite(got).all()


def test_labels_outside_range_count_for_nothing():
    rng = np.random.default_rng(2)
    memory = random_memory(rng)
    features = rng.normal(size=(1, 2, 2, C))
    labels = np.array([[[0, 0], [1, 1]]])
    with_odd = labels.copy()
    got = mem.update_memory(memory, features, labels).numpy()
    features2 = np.concatenate([features, rng.normal(size=(1, 2, 2, C))], axis=0)
    labels2 = np.concatenate([with_odd, np.full((1, 2, 2), IGNORE)], axis=0)
    np.testing.assert_allclose(mem.update_memory(memory, features2, labels2).numpy(), got, atol=1e-12)


def test_non_divisible_label_size_uses_area_rule():
    """Not an integer multiple: area resampling; a constant-class image still moves only that row."""
    rng = np.random.default_rng(3)
    memory = random_memory(rng)
    features = rng.normal(size=(1, 3, 3, C))
    labels = np.full((1, 10, 10), 2)
    got = mem.update_memory(memory, features, labels).numpy()
    zhat = np_normalize(features).reshape(-1, C).mean(axis=0)
    want = memory.copy()
    want[2] = 0.8 * memory[2] + 0.2 * zhat
    np.testing.assert_allclose(got, np_normalize(want), atol=1e-10)


def test_update_gradient_reaches_features_never_old_memory():
    rng = np.random.default_rng(4)
    memory = tf.constant(random_memory(rng))
    features = tf.constant(rng.normal(size=(2, 3, 3, C)))
    labels = tf.constant(random_labels(rng, (2, 6, 6), range(N)))
    probe = tf.constant(rng.normal(size=(N, C)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([memory, features])
        out = tf.reduce_sum(mem.update_memory(memory, features, labels) * probe)
    g_features = tape.gradient(out, features)
    g_memory = tape.gradient(out, memory, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert np.abs(g_features.numpy()).max() > 1e-3
    assert np.abs(g_memory.numpy()).max() == 0.0


def test_update_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    memory = tf.constant(random_memory(rng))
    labels = tf.constant(random_labels(rng, (2, 4, 4), range(N)))
    probe = tf.constant(rng.normal(size=(N, C)))

    def f(x):
        return tf.reduce_sum(mem.update_memory(memory, x, labels) * probe)

    theoretical, numerical = tf.test.compute_gradient(f, [tf.constant(rng.normal(size=(2, 2, 2, C)))])
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-8)


def test_read_matches_numpy():
    rng = np.random.default_rng(6)
    memory = random_memory(rng)
    features = rng.normal(size=(2, 3, 4, C)) * 3.0
    readout, weights = mem.read_memory(memory, features)
    q = np_normalize(features)
    scores = q @ memory.T
    e = np.exp(scores - scores.max(-1, keepdims=True))
    w = e / e.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights.numpy(), w, rtol=1e-12)
    np.testing.assert_allclose(readout.numpy(), w @ memory, rtol=1e-12)
    np.testing.assert_allclose(mem.memory_scores(memory, features).numpy(), scores, rtol=1e-12)
    # Cosine similarity: scaling the features changes nothing.
    np.testing.assert_allclose(mem.read_memory(memory, features * 7.0)[1].numpy(), w, rtol=1e-10)


def test_read_with_gumbel_noise_and_temperature():
    rng = np.random.default_rng(8)
    memory = random_memory(rng)
    features = rng.normal(size=(1, 2, 2, C))
    noise = rng.gumbel(size=(1, 2, 2, N))
    _, weights = mem.read_memory(memory, features, gumbel_noise=noise, temperature=0.5)
    logits = (np_normalize(features) @ memory.T + noise) / 0.5
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(weights.numpy(), e / e.sum(-1, keepdims=True), rtol=1e-10)


def np_centered_scores(memory, features):
    """The mean-row-centred cosine written out: m = mean of the non-zero rows; normalize(q - m) against
    normalize(M[n] - m) per non-zero row; a zero row scores 0."""
    present = np.any(memory != 0, axis=-1)
    mean_row = memory[present].mean(0) if present.any() else np.zeros(memory.shape[-1])
    q = np_normalize(np_normalize(features) - mean_row)
    rows = np.where(present[:, None], np_normalize(memory - mean_row), 0.0)
    return q @ rows.T


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_centered_scores_match_numpy():
    rng = np.random.default_rng(10)
    # Post-ReLU features and nearly parallel non-negative rows: the case the centering is for.
    shared = np.abs(rng.normal(size=C))
    memory = np_normalize(shared + 0.2 * np.abs(rng.normal(size=(N, C))))
    features = np.maximum(shared + rng.normal(size=(2, 3, 4, C)), 0.0) * 3.0
    got = mem.centered_scores(memory, features).numpy()
    np.testing.assert_allclose(got, np_centered_scores(memory, features), rtol=1e-12, atol=1e-14)
    # The mean of all N rows when every row holds a class (the option's definition)
    m = memory.mean(0)
    expected = np_normalize(np_normalize(features) - m) @ np_normalize(memory - m).T
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    raw = mem.memory_scores(memory, features).numpy()

    def spread(s):
        return (s.max(-1) - s.min(-1)).mean()

    assert spread(got) > 3 * spread(raw), (spread(got), spread(raw))  # the shared direction is gone
    np.testing.assert_allclose(mem.read_scores(memory, features, "mean_row").numpy(), got, rtol=0)
    np.testing.assert_array_equal(mem.read_scores(memory, features, "none").numpy(), raw)
    with pytest.raises(ValueError, match="unknown memory_centering"):
        mem.read_scores(memory, features, "mean")


def test_centered_scores_leave_zero_rows_at_zero():
    rng = np.random.default_rng(11)
    memory = random_memory(rng)
    memory[2] = 0.0  # a class never written
    features = rng.normal(size=(1, 2, 3, C))
    got = mem.centered_scores(memory, features).numpy()
    np.testing.assert_allclose(got, np_centered_scores(memory, features), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(got[..., 2], 0.0)
    np.testing.assert_allclose(mem.mean_memory_row(memory).numpy(), memory[[0, 1, 3, 4]].mean(0), rtol=1e-12)
    np.testing.assert_array_equal(mem.centered_scores(np.zeros((N, C)), features).numpy(), 0.0)


@pytest.mark.parametrize("centering", ["none", "mean_row"])
def test_scaled_read_matches_numpy(centering):
    """With a scale s the read logits are s * scores (+ Gumbel noise), and the readout is W^T M of the stored,
    uncentred rows."""
    rng = np.random.default_rng(12)
    memory = random_memory(rng)
    features = rng.normal(size=(2, 3, 2, C))
    noise = rng.gumbel(size=(2, 3, 2, N))
    scores = np_normalize(features) @ memory.T if centering == "none" else np_centered_scores(memory, features)
    for s in (0.5, 7.0, 40.0):
        readout, weights, got_scores = mem.read_memory_with_scores(
            memory, features, scale=tf.constant(s, tf.float64), centering=centering
        )
        np.testing.assert_allclose(got_scores.numpy(), scores, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(weights.numpy(), np_softmax(s * scores), rtol=1e-11)
        np.testing.assert_allclose(readout.numpy(), np_softmax(s * scores) @ memory, rtol=1e-11)
        _, weights = mem.read_memory(
            memory, features, gumbel_noise=noise, scale=tf.constant(s, tf.float64), centering=centering
        )
        np.testing.assert_allclose(weights.numpy(), np_softmax(s * scores + noise), rtol=1e-11)


def test_score_scale_is_exp_clipped_at_100():
    for log_s, s in ((0.0, 1.0), (np.log(0.1), 0.1), (np.log(30.0), 30.0), (np.log(100.0), 100.0), (9.0, 100.0)):
        np.testing.assert_allclose(mem.score_scale(tf.constant(log_s, tf.float64)).numpy(), s, rtol=1e-12)
    # At the clip the gradient still reaches log_s (the variable is clipped to log 100 after each step).
    x = tf.constant(mem.MAX_LOG_SCORE_SCALE, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = mem.score_scale(x)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), 100.0, rtol=1e-12)


def test_initial_memory_is_class_mean_of_normalised_features():
    rng = np.random.default_rng(9)
    batches, feats, labs = [], [], []
    for _ in range(3):
        f = rng.normal(size=(2, 2, 3, C))
        lab = random_labels(rng, (2, 4, 6), [0, 1, 2, 4])  # class 3 never seen
        batches.append((tf.constant(f), tf.constant(lab)))
        feats.append(np.repeat(np.repeat(np_normalize(f), 2, 1), 2, 2))
        labs.append(lab)
    got = mem.initial_memory(batches, N, dtype=tf.float64).numpy()
    z, y = np.concatenate(feats), np.concatenate(labs)
    for n in range(N):
        if n == 3:
            np.testing.assert_array_equal(got[n], 0.0)
        else:
            np.testing.assert_allclose(got[n], np_normalize(z[y == n].mean(axis=0)), rtol=1e-10)
    with pytest.raises(ValueError, match="no batches"):
        mem.initial_memory([], N)


def test_sums_and_counts_combine_exactly():
    """Splitting a batch (as replicas do) and adding sums and counts gives the single-batch update."""
    rng = np.random.default_rng(10)
    memory = random_memory(rng)
    features = rng.normal(size=(4, 2, 2, C))
    labels = random_labels(rng, (4, 4, 4), range(N))
    s1, c1 = mem.class_feature_sums(features[:2], labels[:2], N)
    s2, c2 = mem.class_feature_sums(features[2:], labels[2:], N)
    split = mem.update_memory_from_sums(memory, s1 + s2, c1 + c2).numpy()
    np.testing.assert_allclose(split, mem.update_memory(memory, features, labels).numpy(), atol=1e-14)
