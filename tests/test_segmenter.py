"""MemorySegmenter: every backbone/head builds and runs, `.keras` round trips exactly, memory dtype, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mgml_tf
from mgml_tf.models.segmenter import MemorySegmenter
from tests.helpers import SMALL, episode, small_model

COMBINATIONS = [
    ("resnet_small", "deeplabv3plus"),
    ("resnet_small", "deeplabv2"),
    ("resnet50", "deeplabv3plus"),
    ("resnet50", "deeplabv2"),
    ("resnet101", "deeplabv3plus"),
    ("resnet101", "deeplabv2"),
]


@pytest.mark.parametrize("backbone,head", COMBINATIONS)
def test_every_backbone_and_head_runs(backbone, head):
    model = mgml_tf.build_model(
        backbone=backbone,
        head=head,
        num_classes=5,
        feature_channels=16,
        decoder_channels=16,
        dropout=0.0,
        compile=False,
    )
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 48, 64, 3)).astype(np.float32)
    logits = model(images)
    assert logits.shape == (2, 48, 64, 5) and logits.dtype == tf.float32
    out = model.forward(images, training=True)
    stride = model.backbone.output_stride
    assert out["features"].shape[1:] == (-(-48 // stride), -(-64 // stride), 16)
    assert out["weights"].shape[-1] == 5 and out["aux_logits"].shape == (2, 48, 64, 5)
    np.testing.assert_allclose(np.sum(out["weights"].numpy(), -1), 1.0, rtol=1e-5)


def test_output_stride_defaults_follow_the_head():
    v3 = mgml_tf.build_model(**{**SMALL, "head": "deeplabv3plus"}, compile=False)
    v2 = mgml_tf.build_model(**{**SMALL, "head": "deeplabv2"}, compile=False)
    assert v3.backbone.output_stride == 16 and v2.backbone.output_stride == 8


def test_keras_round_trip_is_exact(tmp_path):
    model = small_model(memory_momentum=0.7, meta_order=1)
    model.train_step(episode(np.random.default_rng(0)))  # moves weights, BN statistics, memory, optimiser
    images = np.random.default_rng(1).uniform(0, 255, size=(1, 32, 32, 3)).astype(np.float32)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, MemorySegmenter)
    np.testing.assert_array_equal(loaded.memory.numpy(), model.memory.numpy())
    np.testing.assert_array_equal(loaded(images).numpy(), model(images).numpy())
    assert loaded.training_options["meta_order"] == 1 and loaded.model_options["memory_momentum"] == 0.7
    assert len(loaded.variables) == len(model.variables)
    for a, b in zip(loaded.variables, model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(loaded.optimizer.iterations.numpy()) == 1
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_without_memory_has_no_memory_parts():
    model = mgml_tf.build_model(**SMALL, method="baseline", compile=False)
    assert model.memory is None and model.update_variables() == []
    assert "weights" not in model.forward(np.zeros((1, 32, 32, 3), np.float32))
    with_memory = mgml_tf.build_model(**SMALL, compile=False)
    assert with_memory.count_params() > model.count_params()


def test_memory_stays_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = mgml_tf.build_model(**SMALL, compile=False)
    assert model.memory.dtype == "float32"
    out = model.forward(np.zeros((1, 32, 32, 3), np.float32), training=True)
    assert out["logits"].dtype == tf.float32 and out["weights"].dtype == tf.float32


def test_predict_with_weights_shapes():
    model = small_model()
    probabilities, weights = model.predict_with_weights(np.zeros((1, 40, 56, 3), np.float32))
    assert probabilities.shape == (1, 40, 56, 4) and weights.shape == (1, 40, 56, 4)
    np.testing.assert_allclose(probabilities.numpy().sum(-1), 1.0, rtol=1e-5)


def test_initialize_memory_is_class_means_of_encoder_features():
    model = small_model()
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 32, 32)).astype(np.int32)  # class 3 never seen
    model.initialize_memory([(images, labels)])
    memory = model.memory.numpy()
    np.testing.assert_array_equal(memory[3], 0.0)
    features = model.encode(images, training=False)[0].numpy()
    stride = 32 // features.shape[1]
    z = features / np.linalg.norm(features, axis=-1, keepdims=True)
    z = np.repeat(np.repeat(z, stride, 1), stride, 2)
    for n in range(3):
        mean = z[labels == n].mean(axis=0)
        np.testing.assert_allclose(memory[n], mean / np.linalg.norm(mean), atol=1e-5)


@pytest.mark.parametrize(
    "shape,match",
    [((32, 32, 3), "4-D batch"), ((1, 32, 32, 4), "3 \\(RGB\\) channels"), ((1, 32, 32, 1), "3 \\(RGB\\) channels")],
)
def test_bad_images_get_a_clear_error(shape, match):
    model = small_model()
    with pytest.raises(ValueError, match=match):
        model(np.zeros(shape, np.float32))


@pytest.mark.parametrize(
    "options,match",
    [
        (dict(backbone="resnet18"), "unknown backbone 'resnet18'; choose one of"),
        (dict(head="pspnet"), "unknown head 'pspnet'; choose one of"),
        (dict(memory_momentum=1.0), "memory_momentum must be in \\[0, 1\\)"),
        (dict(num_classes=1), "num_classes must be at least 2"),
        (dict(output_stride=4), "output stride"),
        (dict(use_memory=False), "needs the memory"),
        (dict(learning_rate=-1.0), "learning_rate must be a positive number"),
        (dict(lr_schedule="cosine"), "unknown lr_schedule"),
    ],
)
def test_bad_options_get_a_clear_error(options, match):
    with pytest.raises(ValueError, match=match):
        mgml_tf.build_model(**{**SMALL, **options})


def test_missing_or_misfit_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        mgml_tf.build_model(**SMALL, backbone_weights=str(tmp_path / "nope.weights.h5"))
    other = mgml_tf.build_model(**{**SMALL, "backbone": "resnet_small"}, compile=False)
    path = tmp_path / "small.weights.h5"
    other.backbone.save_weights(path)
    with pytest.raises(ValueError):
        mgml_tf.build_model(**{**SMALL, "backbone": "resnet50"}, backbone_weights=str(path), compile=False)
