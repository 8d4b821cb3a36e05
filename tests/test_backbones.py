"""Backbones: strides/channels, dilation, weight transfer from keras.applications, saving, errors, float64."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.models import backbones
from mgml_tf.models.backbones import ResNetBackbone, build_backbone


def _use_float64():
    # Both: once a global dtype policy has been set (conftest resets it to "float32" after every test),
    # set_floatx alone no longer changes the dtype of new layers.
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")


def _images(batch=1, size=64, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def _check_outputs(model, out, size):
    assert set(out) == {"low_level", "aux", "high_level"}
    os_ = model.output_stride
    assert tuple(out["low_level"].shape[1:]) == (size // 4, size // 4, model.low_level_channels)
    aux = size // min(16, os_)
    assert tuple(out["aux"].shape[1:]) == (aux, aux, model.aux_channels)
    assert tuple(out["high_level"].shape[1:]) == (size // os_, size // os_, model.high_level_channels)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_resnet_small_strides(output_stride):
    model = build_backbone("resnet_small", output_stride)
    assert (model.low_level_channels, model.aux_channels, model.high_level_channels) == (16, 64, 128)
    out = model(_images(2), training=True)
    _check_outputs(model, out, 64)


def test_resnet50_strides_and_dilation_keep_weight_shapes():
    shapes = None
    for output_stride in (32, 16, 8):
        model = build_backbone("resnet50", output_stride)
        assert (model.low_level_channels, model.aux_channels, model.high_level_channels) == (256, 1024, 2048)
        _check_outputs(model, model(_images(1)), 64)
        these = [tuple(w.shape) for w in model.weights]
        assert shapes is None or these == shapes
        shapes = these
    assert model.dilations == (1, 1, 2, 4)
    assert model.get_layer("conv5_block3_2_conv").dilation_rate == (4, 4)
    assert model.get_layer("conv4_block1_1_conv").strides == (1, 1)
    assert model.count_params() == 23587712  # keras.applications.ResNet50(include_top=False)


def test_resnet101_builds():
    model = build_backbone("resnet101", 16)
    _check_outputs(model, model(_images(1)), 64)
    assert (
        sum(1 for layer in model.layers if layer.name.startswith("conv4_block") and layer.name.endswith("_out")) == 23
    )


def test_non_square_and_dynamic_sizes():
    model = build_backbone("resnet_small", 16)
    out = model(np.zeros((1, 96, 64, 3), "float32"))
    assert tuple(out["high_level"].shape[1:3]) == (6, 4)
    fn = tf.function(model, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    assert tuple(fn(np.zeros((2, 32, 48, 3), "float32"))["low_level"].shape) == (2, 8, 12, 16)


def test_unknown_name_and_output_stride():
    with pytest.raises(ValueError, match="resnet50, resnet101, resnet_small"):
        build_backbone("resnet18")
    with pytest.raises(ValueError, match="8, 16, 32"):
        build_backbone("resnet_small", output_stride=4)


def test_bad_images():
    model = build_backbone("resnet_small", 16)
    with pytest.raises(ValueError, match="rank 4"):
        model(np.zeros((64, 64, 3), "float32"))
    with pytest.raises(ValueError, match="3 channels"):
        model(np.zeros((1, 64, 64, 1), "float32"))
    with pytest.raises(ValueError, match="3 channels"):
        model.stateless_call(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            np.zeros((1, 32, 32, 4), "float32"),
        )


def test_input_channels_option():
    model = build_backbone("resnet_small", 16, input_channels=1)
    assert tuple(model(np.zeros((1, 32, 32, 1), "float32"))["aux"].shape) == (1, 2, 2, 64)
    with pytest.raises(ValueError, match="input_channels must be 3"):
        build_backbone("resnet50", input_channels=1)


def test_bn_options_reach_every_batch_norm():
    from mgml_tf.layers import MetaBatchNormalization

    model = build_backbone("resnet_small", 8, bn_momentum=0.9, synchronized_bn=True)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(isinstance(b, MetaBatchNormalization) for b in bns)
    assert all(b.momentum == 0.9 and b.synchronized and b.epsilon == 1.001e-5 for b in bns)


def test_config_round_trip():
    model = build_backbone("resnet_small", 8, bn_momentum=0.9)
    config = model.get_config()
    clone = ResNetBackbone.from_config(config)
    assert clone.get_config() == config
    assert clone.output_stride == 8 and clone.dilations == (1, 1, 2, 4)


def test_keras_save_load_round_trip(tmp_path):
    model = build_backbone("resnet_small", 16)
    model(_images(2), training=True)  # moves the BN statistics away from their initial values
    path = str(tmp_path / "backbone.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ResNetBackbone) and loaded.output_stride == 16
    x = _images(2, seed=1)
    a, b = model(x), loaded(x)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


def test_preprocessing():
    x = _images(1, 8)
    caffe = backbones.ImagePreprocessing("caffe")(x)
    np.testing.assert_allclose(
        np.asarray(caffe), keras.applications.resnet.preprocess_input(x.copy()), rtol=1e-6, atol=1e-4
    )
    np.testing.assert_allclose(np.asarray(backbones.ImagePreprocessing("scale")(x)), x / 127.5 - 1, atol=1e-6)


def _randomise(app, seed=0):
    """Random BN statistics and affine parameters, random conv biases: a real test of the transfer."""
    rng = np.random.default_rng(seed)
    for layer in app.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.05, layer.bias.shape).astype("float32"))


def _compare_with_application(app, backbone, num_blocks4):
    x = _images(2, 64, seed=3)
    pre = keras.applications.resnet.preprocess_input(x.copy())
    taps = keras.Model(
        app.input,
        {
            "low_level": app.get_layer("conv2_block3_out").output,
            "aux": app.get_layer(f"conv4_block{num_blocks4}_out").output,
            "high_level": app.output,
        },
    )
    want = taps(pre, training=False)
    got = backbone(x, training=False)
    for key in ("low_level", "aux", "high_level"):
        w, g = np.asarray(want[key]), np.asarray(got[key])
        assert np.abs(w).max() > 0
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-4 * np.abs(w).max(), err_msg=key)


@pytest.mark.slow  # full-size ResNets built twice
def test_resnet50_weight_transfer_from_weights_h5(tmp_path):
    app = keras.applications.ResNet50(weights=None, include_top=False)
    _randomise(app)
    path = str(tmp_path / "r50.weights.h5")
    app.save_weights(path)
    backbone = build_backbone("resnet50", output_stride=32, weights=path)
    _compare_with_application(app, backbone, 6)
    # The same weights at output stride 8 load too (dilation changes no shape).
    build_backbone("resnet50", output_stride=8, weights=path)


@pytest.mark.slow  # full-size ResNets built twice
def test_resnet50_weight_transfer_from_keras_file(tmp_path):
    app = keras.applications.ResNet50(weights=None, include_top=False)
    _randomise(app, seed=1)
    path = str(tmp_path / "r50.keras")
    app.save(path)
    backbone = build_backbone("resnet50", output_stride=32, weights=path)
    _compare_with_application(app, backbone, 6)


@pytest.mark.slow  # full-size ResNets built twice
def test_resnet101_weight_transfer(tmp_path):
    app = keras.applications.ResNet101(weights=None, include_top=False)
    _randomise(app, seed=2)
    path = str(tmp_path / "r101.weights.h5")
    app.save_weights(path)
    backbone = build_backbone("resnet101", output_stride=32, weights=path)
    _compare_with_application(app, backbone, 23)


def test_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        build_backbone("resnet50", weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_backbone("resnet_small", weights="imagenet")
    small = build_backbone("resnet_small", 16)
    small_h5 = str(tmp_path / "small.weights.h5")
    small.save_weights(small_h5)
    with pytest.raises(ValueError, match="do not fit"):
        build_backbone("resnet50", weights=small_h5)
    small_keras = str(tmp_path / "small.keras")
    small.save(small_keras)
    with pytest.raises(ValueError, match="conv1_conv"):
        build_backbone("resnet50", weights=small_keras)
    # A resnet_small file loads into resnet_small.
    loaded = build_backbone("resnet_small", 8, weights=small_h5)
    for a, b in zip(small.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_transfer_names_first_mismatching_layer():
    a = build_backbone("resnet_small", 16)
    b = build_backbone("resnet_small", 16, input_channels=1)
    with pytest.raises(ValueError, match="'conv1_conv'"):
        backbones.transfer_weights(b, a)


def test_float64():
    _use_float64()
    model = build_backbone("resnet_small", 16)
    out = model(_images(1, 32).astype("float64"), training=True)
    assert all(v.dtype == tf.float64 for v in out.values())
    assert all(w.dtype == "float64" for w in model.weights)


def test_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    model = build_backbone("resnet_small", 16)
    out = model(_images(1, 32), training=True)
    assert all(v.dtype == tf.float16 for v in out.values())
    assert all(w.dtype == "float32" for w in model.weights)


def test_input_gradient_twice_differentiable():
    _use_float64()
    model = build_backbone("resnet_small", 8)
    x = tf.constant(_images(1, 32).astype("float64"))
    kernel = model.get_layer("conv1_conv").kernel
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            out = model(x, training=True)
            loss = sum(tf.reduce_sum(tf.square(v)) for v in out.values())
        g = inner.gradient(loss, x)
        s = tf.reduce_sum(tf.square(g))
    second = outer.gradient(s, kernel.value)
    assert second is not None and np.abs(np.asarray(second)).max() > 0


def test_transfer_from_a_wrapped_backbone(tmp_path):
    inner = build_backbone("resnet_small", 16)
    inner(_images(1, 32), training=True)
    images = keras.Input((None, None, 3))
    wrapper = keras.Model(images, inner(images)["high_level"])
    path = str(tmp_path / "wrapper.keras")
    wrapper.save(path)
    loaded = build_backbone("resnet_small", 32, weights=path)
    for a, b in zip(inner.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
