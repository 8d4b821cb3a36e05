"""BatchNormalization's second-order gradient: Keras's is wrong on TF (DESIGN §5), ours is right.

The quantity checked is the one a meta step needs: ``phi(x) = <dL/dx, v>`` (a first derivative, which both
layers get right) differentiated once more. Autodiff of ``phi`` is compared with float64 central finite
differences of ``phi`` in a random direction.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.layers import MetaBatchNormalization


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


def test_forward_equals_keras_batch_norm():
    x = tf.random.stateless_normal([4, 5, 5, 3], seed=[1, 2]) * 3 + 2
    ours, theirs = MetaBatchNormalization(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), atol=1e-5)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), atol=1e-5)

