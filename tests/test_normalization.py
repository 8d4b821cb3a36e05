"""BatchNormalization's and LayerNormalization's second-order gradients: Keras's are wrong on TF, ours are
right (docs/DESIGN.md#second-order-gradients-through-batchnorm).

The quantity checked is the one a meta step needs: ``phi(x) = <dL/dx, v>`` (a first derivative, which both
layers get right) differentiated once more. Autodiff of ``phi`` is compared with float64 central finite
differences of ``phi`` in a random direction.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.layers import MetaBatchNormalization, MetaLayerNormalization, exact_layer_norms


def second_order_relative_error(layer, seed=0):
    rng = np.random.default_rng(seed)
    x0 = tf.constant(rng.normal(size=(4, 3, 3, 5)) * 2 + 1)
    c = tf.constant(rng.normal(size=(4, 3, 3, 5)))
    v = tf.constant(rng.normal(size=(4, 3, 3, 5)))
    u = tf.constant(rng.normal(size=(4, 3, 3, 5)))
    layer.build(x0.shape)

    def phi(x):
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = tf.reduce_sum(c * tf.square(layer(x, training=True)))
        return tf.reduce_sum(inner.gradient(loss, x) * v)

    with tf.GradientTape() as outer:
        outer.watch(x0)
        value = phi(x0)
    analytic = tf.reduce_sum(outer.gradient(value, x0) * u).numpy()
    eps = 1e-5
    numeric = ((phi(x0 + eps * u) - phi(x0 - eps * u)) / (2 * eps)).numpy()
    return abs(analytic - numeric) / abs(numeric)


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")


def test_meta_batch_norm_second_order_is_exact(float64):
    assert second_order_relative_error(MetaBatchNormalization(dtype="float64")) < 1e-7


def test_keras_batch_norm_second_order_is_wrong(float64):
    """Documents the trap; if this starts failing, Keras fixed it and the override can go."""
    assert second_order_relative_error(keras.layers.BatchNormalization(dtype="float64")) > 1e-4


def test_meta_layer_norm_second_order_is_exact(float64):
    assert second_order_relative_error(MetaLayerNormalization(epsilon=1e-6, dtype="float64")) < 1e-7


def test_keras_layer_norm_second_order_is_wrong(float64):
    """The same trap in LayerNormalization (every keras-hub ViT's); if this starts failing, Keras fixed it."""
    assert second_order_relative_error(keras.layers.LayerNormalization(epsilon=1e-6, dtype="float64")) > 1e-4


@pytest.mark.parametrize("axis", [-1, [1, 3]])
def test_meta_layer_norm_forward_equals_keras_and_converts_in_place(axis):
    x = tf.random.stateless_normal([2, 3, 4, 5], seed=[3, 4]) * 3 + 2
    theirs = keras.layers.LayerNormalization(axis=axis, epsilon=1e-6)
    model = keras.Sequential([keras.Input((3, 4, 5)), theirs])
    theirs.gamma.assign(tf.random.stateless_normal(theirs.gamma.shape, seed=[5, 6]))
    theirs.beta.assign(tf.random.stateless_normal(theirs.beta.shape, seed=[7, 8]))
    expected, paths = model(x).numpy(), [v.path for v in model.weights]
    exact_layer_norms(model)
    assert type(theirs) is MetaLayerNormalization and [v.path for v in model.weights] == paths
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-5)


def test_forward_equals_keras_batch_norm():
    x = tf.random.stateless_normal([4, 5, 5, 3], seed=[1, 2]) * 3 + 2
    ours, theirs = MetaBatchNormalization(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), atol=1e-5)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), atol=1e-5)


@pytest.fixture
def two_pass_mode():
    from mgml_tf.layers import normalization

    yield normalization.set_batch_norm_mode
    normalization.set_batch_norm_mode(None)


def _bn_derivatives(layer, x, c):
    """Output, moving statistics after one training call, first derivatives (input, gamma, beta) of
    sum(c * sin(y)), and second derivatives of their squared norm."""
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(c * tf.sin(y))
        first = inner.gradient(loss, [x] + layer.trainable_weights)
        norm = tf.add_n([tf.reduce_sum(g * g) for g in first])
    second = outer.gradient(norm, [x] + layer.trainable_weights)
    return [y, layer.moving_mean.value, layer.moving_variance.value] + first + second


@pytest.mark.parametrize("epsilon", [1e-3, 1.001e-5])
def test_fused_kernel_equals_two_pass_to_second_order(two_pass_mode, epsilon):
    """float32 training: the fused kernel gives the two-pass layer's output, moving statistics (the biased
    batch variance, as Keras averages it), first and second derivatives, up to float32 rounding; inference
    with the moving statistics too."""
    rng = np.random.default_rng(3)
    x = tf.constant((rng.normal(size=(4, 7, 9, 6)) * 3 + 1).astype(np.float32))
    c = tf.constant(rng.normal(size=(4, 7, 9, 6)).astype(np.float32))
    results = {}
    for mode in ("two_pass", "auto"):
        two_pass_mode(mode)
        layer = MetaBatchNormalization(momentum=0.5, epsilon=epsilon)
        layer.build(x.shape)
        layer.gamma.assign(rng.normal(size=6).astype(np.float32) if mode == "two_pass" else results["gamma"])
        results["gamma"] = layer.gamma.numpy()
        results[mode] = _bn_derivatives(layer, x, c) + [layer(x, training=False)]
    for got, want in zip(results["auto"], results["two_pass"]):
        scale = float(tf.reduce_max(tf.abs(want)))
        assert float(tf.reduce_max(tf.abs(got - want))) <= 2e-5 * scale, (got.shape, scale)


def _op_types(layer, x, training):
    fn = tf.function(lambda t: layer(t, training=training))
    return {op.type for op in fn.get_concrete_function(x).graph.get_operations()}


def test_kernel_choice(two_pass_mode):
    """float32 NHWC runs FusedBatchNormV3 in training and inference; float64, the two_pass mode and
    synchronised or masked calls take the two-pass moments."""
    layer = MetaBatchNormalization()
    x = tf.zeros([2, 3, 3, 4])
    layer.build(x.shape)
    assert "FusedBatchNormV3" in _op_types(layer, x, True) and "FusedBatchNormV3" in _op_types(layer, x, False)
    two_pass_mode("two_pass")
    assert "FusedBatchNormV3" not in _op_types(layer, x, True)
    two_pass_mode(None)
    keras.config.set_floatx("float64")
    layer64 = MetaBatchNormalization(dtype="float64")
    x64 = tf.zeros([2, 3, 3, 4], tf.float64)
    layer64.build(x64.shape)
    assert "FusedBatchNormV3" not in _op_types(layer64, x64, True)


def test_batch_norm_mode_errors(monkeypatch, two_pass_mode):
    from mgml_tf.layers import normalization

    monkeypatch.setenv("MGML_TF_BATCH_NORM", "cudnn")
    with pytest.raises(ValueError, match="MGML_TF_BATCH_NORM='cudnn' is not a batch norm mode"):
        normalization.batch_norm_mode()
    with pytest.raises(ValueError, match="unknown batch norm mode 'fused'"):
        two_pass_mode("fused")
