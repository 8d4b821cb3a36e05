"""Heads: output shapes, determinism, saving, config, dtypes, second-order gradients, bilinear resize."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.layers import MetaBatchNormalization
from mgml_tf.models.heads import (
    ASPP,
    AuxiliaryHead,
    ConvBNReLU,
    DeepLabV2Head,
    DeepLabV3PlusDecoder,
    FeatureProjection,
    resize_bilinear,
)

NUM_CLASSES = 5


def _x(shape, seed=0, dtype="float32"):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _use_float64():
    # Both: once a global dtype policy has been set (conftest resets it to "float32" after every test),
    # set_floatx alone no longer changes the dtype of new layers.
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")


# Each case: (factory, call inputs as arrays, expected output shape).
def _cases(dtype="float32"):
    f = _x((2, 4, 6, 32), 1, dtype)
    low = _x((2, 16, 24, 16), 2, dtype)
    return {
        "aspp": (lambda: ASPP(filters=8, rates=(1, 2, 3), dropout=0.0), (f,), (2, 4, 6, 8)),
        "decoder": (
            lambda: DeepLabV3PlusDecoder(NUM_CLASSES, filters=8, low_level_filters=4),
            (f, low),
            (2, 16, 24, NUM_CLASSES),
        ),
        "projection": (lambda: FeatureProjection(filters=8), (f,), (2, 4, 6, 8)),
        "deeplabv2": (lambda: DeepLabV2Head(NUM_CLASSES, rates=(1, 2)), (f,), (2, 4, 6, NUM_CLASSES)),
        "aux": (lambda: AuxiliaryHead(NUM_CLASSES, filters=8, dropout=0.0), (f,), (2, 4, 6, NUM_CLASSES)),
        "conv_bn_relu": (lambda: ConvBNReLU(8, 3, dilation_rate=2), (f,), (2, 4, 6, 8)),
    }


CASES = list(_cases())


@pytest.mark.parametrize("case", CASES)
def test_output_shape_and_determinism(case):
    make, inputs, shape = _cases()[case]
    layer = make()
    out = layer(*inputs, training=True)
    assert tuple(out.shape) == shape and out.dtype == tf.float32
    # No randomness without dropout; inference mode too.
    np.testing.assert_array_equal(np.asarray(layer(*inputs, training=True)), np.asarray(out))
    np.testing.assert_array_equal(np.asarray(layer(*inputs)), np.asarray(layer(*inputs)))
    symbolic = layer.compute_output_spec(*[keras.KerasTensor((None, None, None, x.shape[-1])) for x in inputs])
    assert symbolic.shape[-1] == shape[-1]


def test_default_configurations():
    f = _x((1, 8, 8, 64))
    assert tuple(ASPP()(f).shape) == (1, 8, 8, 256)
    assert tuple(DeepLabV3PlusDecoder(19)(_x((1, 8, 8, 256)), _x((1, 32, 32, 24))).shape) == (1, 32, 32, 19)
    assert tuple(FeatureProjection()(f).shape) == (1, 8, 8, 256)
    assert tuple(DeepLabV2Head(19)(f).shape) == (1, 8, 8, 19)
    assert tuple(AuxiliaryHead(19)(f).shape) == (1, 8, 8, 19)


def test_dropout_is_the_only_randomness():
    f = _x((2, 4, 4, 16))
    aspp = ASPP(filters=8, rates=(1, 2, 3), dropout=0.5)
    a, b = aspp(f, training=True), aspp(f, training=True)
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(aspp(f)), np.asarray(aspp(f)))


def test_structure_and_bn_options():
    aspp = ASPP(filters=8, rates=(6, 12, 18), bn_momentum=0.9, synchronized_bn=True)
    aspp.build((None, None, None, 16))
    convs = [l for l in aspp._flatten_layers() if isinstance(l, keras.layers.Conv2D)]
    bns = [l for l in aspp._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert len(convs) == 6 and len(bns) == 6  # 1x1, 3 dilated 3x3, pooling, projection
    assert not any(c.use_bias for c in convs)
    assert sorted(c.dilation_rate[0] for c in convs if c.kernel_size == (3, 3)) == [6, 12, 18]
    assert all(isinstance(b, MetaBatchNormalization) and b.momentum == 0.9 and b.synchronized for b in bns)
    decoder = DeepLabV3PlusDecoder(NUM_CLASSES, bn_momentum=0.9, synchronized_bn=True)
    decoder.build((None, None, None, 256), (None, None, None, 256))
    assert decoder.classifier.use_bias and decoder.classifier.kernel.shape == (1, 1, 256, NUM_CLASSES)
    assert decoder.low_level_projection.conv.kernel.shape == (1, 1, 256, 48)
    assert decoder.fuse1.conv.kernel.shape == (3, 3, 256 + 48, 256)
    head = DeepLabV2Head(NUM_CLASSES)
    head.build((None, None, None, 32))
    assert [c.dilation_rate[0] for c in head.convs] == [6, 12, 18, 24] and all(c.use_bias for c in head.convs)


@pytest.mark.parametrize("case", CASES)
def test_keras_save_load_round_trip(case, tmp_path):
    make, inputs, _ = _cases()[case]
    layer = make()
    layer(*inputs, training=True)  # moves BN statistics
    sym = [keras.Input(x.shape[1:]) for x in inputs]
    model = keras.Model(sym, layer(*sym))
    path = str(tmp_path / f"{case}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(inputs)), np.asarray(model(inputs)))
    assert type(loaded.layers[-1]) is type(layer)


@pytest.mark.parametrize("case", CASES)
def test_config_round_trip(case):
    make, inputs, _ = _cases()[case]
    layer = make()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(*inputs)
    layer(*inputs)
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in layer.weights]


@pytest.mark.parametrize("case", CASES)
def test_float64(case):
    _use_float64()
    make, inputs, _ = _cases("float64")[case]
    layer = make()
    out = layer(*inputs, training=True)
    assert out.dtype == tf.float64 and all(w.dtype == "float64" for w in layer.weights)


@pytest.mark.parametrize("case", CASES)
def test_mixed_precision(case):
    keras.config.set_dtype_policy("mixed_float16")
    make, inputs, _ = _cases()[case]
    layer = make()
    out = layer(*inputs, training=True)
    assert out.dtype == tf.float16 and all(w.dtype == "float32" for w in layer.weights)


def test_bad_rank():
    with pytest.raises(ValueError, match="rank 4"):
        ASPP(filters=8)(_x((4, 6, 32)))
    with pytest.raises(ValueError, match="rank 4"):
        DeepLabV3PlusDecoder(3, filters=8)(_x((1, 4, 6, 32)), _x((16, 24, 16)))


def test_conv_bn_block_input_gradient_is_twice_differentiable():
    _use_float64()
    block = ConvBNReLU(4, 3, dilation_rate=2)
    x = tf.constant(_x((2, 6, 6, 3), dtype="float64"))
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = tf.reduce_sum(tf.sin(block(x, training=True)))
        g = inner.gradient(loss, x)
        s = tf.reduce_sum(tf.square(g))
    second_x, second_k = outer.gradient(s, [x, block.conv.kernel.value])
    assert second_x is not None and second_k is not None
    assert np.abs(np.asarray(second_k)).max() > 0


def test_decoder_second_order_through_upsampling():
    """The meta step needs d(dL/dtheta)/dtheta through the upsampling; check it against finite differences."""
    _use_float64()
    decoder = DeepLabV3PlusDecoder(3, filters=4, low_level_filters=2)
    features = tf.constant(_x((1, 3, 3, 4), 1, "float64"))
    low = tf.constant(_x((1, 6, 6, 5), 2, "float64"))
    decoder(features, low)
    kernel = decoder.classifier.kernel

    def grad_norm(f):
        with tf.GradientTape() as tape:
            tape.watch(f)
            loss = tf.reduce_sum(tf.sin(decoder(f, low, training=True)))
        return tf.reduce_sum(tf.square(tape.gradient(loss, f)))

    with tf.GradientTape() as outer:
        s = grad_norm(features)
    analytic = outer.gradient(s, kernel.value)
    assert analytic is not None
    direction = _x(kernel.shape, 5, "float64")
    k0 = kernel.numpy()
    eps = 1e-5
    kernel.assign(k0 + eps * direction)
    plus = grad_norm(features)
    kernel.assign(k0 - eps * direction)
    minus = grad_norm(features)
    kernel.assign(k0)
    numeric = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(np.sum(analytic.numpy() * direction), numeric.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "shape,size", [((2, 3, 5, 4), (12, 20)), ((1, 7, 6, 2), (16, 9)), ((1, 8, 8, 3), (4, 3)), ((1, 1, 1, 2), (5, 5))]
)
def test_resize_bilinear_matches_tf_image_resize(shape, size):
    x = _x(shape)
    np.testing.assert_allclose(
        np.asarray(resize_bilinear(x, size)), tf.image.resize(x, size, method="bilinear").numpy(), rtol=1e-5, atol=1e-5
    )
    legacy = tf.compat.v1.image.resize_bilinear(x, size, align_corners=True).numpy()
    np.testing.assert_allclose(np.asarray(resize_bilinear(x, size, align_corners=True)), legacy, rtol=1e-5, atol=1e-5)


def test_resize_bilinear_dynamic_sizes_and_dtypes():
    fn = tf.function(
        lambda x, y: resize_bilinear(x, tf.shape(y)[1:3]),
        input_signature=[tf.TensorSpec([None, None, None, 2]), tf.TensorSpec([None, None, None, 1])],
    )
    assert tuple(fn(_x((1, 3, 4, 2)), np.zeros((1, 7, 9, 1), "float32")).shape) == (1, 7, 9, 2)
    assert resize_bilinear(_x((1, 2, 2, 1), dtype="float16"), (4, 4)).dtype == tf.float16
    assert resize_bilinear(_x((1, 2, 2, 1), dtype="float64"), (4, 4)).dtype == tf.float64


def test_resize_bilinear_second_order_where_tf_image_resize_has_none():
    x = tf.constant(_x((1, 3, 3, 2), dtype="float64"))
    w = tf.Variable(_x((1, 6, 6, 2), 1, "float64"))

    def second(resize):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                loss = tf.reduce_sum(tf.square(resize(x * 2.0) * w))
            g = inner.gradient(loss, x)
            s = tf.reduce_sum(g * g)
        return outer.gradient(s, w)

    assert second(lambda t: resize_bilinear(t, (6, 6))) is not None
    # The trap this function exists for: TensorFlow drops this derivative without an error.
    assert second(lambda t: tf.cast(tf.image.resize(t, (6, 6), method="bilinear"), t.dtype)) is None
