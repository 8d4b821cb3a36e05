"""Where the paper is silent and the reference code decides (docs/REFERENCE.md): BatchNorm epsilon of the
heads and memory blocks, where the memory temperature acts, what the update network reads, which passes move
the BatchNorm moving statistics; and that configurations saved before these options keep their meaning."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from mgml_tf import losses as L
from mgml_tf import memory as memory_ops
from mgml_tf.cli import flags as flags_lib
from mgml_tf.layers import MemoryReadFuse, MemoryUpdateNetwork
from mgml_tf.models.heads import ASPP, AuxiliaryHead, ConvBNReLU
from mgml_tf.models.segmenter import LEGACY_OPTIONS, MemorySegmenter, with_legacy_options
from mgml_tf.ops import resize_bilinear
from mgml_tf.training import model_dir as md
from tests.helpers import episode, small_model

NEW_OPTIONS = ("bn_epsilon", "memory_temperature_on", "update_network_input", "bn_statistics_from")


def _batch_norms(layer):
    return [
        x
        for x in layer._flatten_layers(include_self=True, recursive=True)
        if isinstance(x, keras.layers.BatchNormalization)
    ]


def _head_batch_norms(model):
    heads = [model.encoder_head, model.decoder, model.aux_head, model.update_network, model.memory_fuse]
    return [bn for head in heads if head is not None for bn in _batch_norms(head)]


# ------------------------------------------------------------------------------------------ BN epsilon
def test_bn_epsilon_defaults_read_from_built_layers():
    model = small_model()
    heads = _head_batch_norms(model)
    assert len(heads) >= 10  # ASPP (6), decoder (3), aux (1), update network, read block
    assert {bn.epsilon for bn in heads} == {1e-5}
    assert {bn.epsilon for bn in _batch_norms(model.backbone)} == {1.001e-5}  # Keras ResNet's, unchanged
    old = small_model(bn_epsilon=1e-3)
    assert {bn.epsilon for bn in _head_batch_norms(old)} == {1e-3}
    assert {bn.epsilon for bn in _batch_norms(old.backbone)} == {1.001e-5}
    assert model.get_config()["bn_epsilon"] == 1e-5
    with pytest.raises(ValueError, match="bn_epsilon"):
        small_model(bn_epsilon=0.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ConvBNReLU(4, 3),
        lambda: ASPP(filters=4, rates=(1, 2)),
        lambda: AuxiliaryHead(3, filters=4),
        lambda: MemoryUpdateNetwork(4),
        lambda: MemoryReadFuse(4, temperature=0.5),
    ],
)
def test_layer_config_without_bn_epsilon_keeps_keras_default(make):
    layer = make()
    config = layer.get_config()
    assert config["bn_epsilon"] == 1e-5
    assert {bn.epsilon for bn in _batch_norms(type(layer).from_config(config))} == {1e-5}
    del config["bn_epsilon"]  # as saved before the option
    assert {bn.epsilon for bn in _batch_norms(type(layer).from_config(config))} == {1e-3}
    serialized = keras.saving.serialize_keras_object(layer)
    del serialized["config"]["bn_epsilon"]
    assert {bn.epsilon for bn in _batch_norms(keras.saving.deserialize_keras_object(serialized))} == {1e-3}


def test_model_config_without_new_options_keeps_old_behaviour():
    config = small_model().get_config()
    assert {k: config[k] for k in NEW_OPTIONS} == dict(
        bn_epsilon=1e-5,
        memory_temperature_on="cohesion",
        update_network_input="normalized",
        bn_statistics_from="meta_train",
    )
    again = MemorySegmenter.from_config(config)
    assert {k: again.get_config()[k] for k in NEW_OPTIONS} == {k: config[k] for k in NEW_OPTIONS}
    old = MemorySegmenter.from_config({k: v for k, v in config.items() if k not in NEW_OPTIONS})
    assert {k: old.get_config()[k] for k in NEW_OPTIONS} == LEGACY_OPTIONS
    assert {bn.epsilon for bn in _head_batch_norms(old)} == {1e-3}
    assert with_legacy_options({"bn_epsilon": 2e-5}) == {**LEGACY_OPTIONS, "bn_epsilon": 2e-5}


def test_model_dir_without_new_options_rebuilds_old_behaviour(tmp_path):
    options = md.json_options({k: v for k, v in flags_lib.option_defaults().items() if k not in NEW_OPTIONS})
    options.update(
        backbone="resnet_small",
        num_classes=4,
        feature_channels=8,
        decoder_channels=8,
        low_level_channels=4,
        aspp_rates=[1, 2, 3],
    )
    with open(os.path.join(tmp_path, md.CONFIG_JSON), "w") as f:
        json.dump({"options": options}, f)
    model, _, _ = md.build_from_dir(str(tmp_path), restore=False)
    assert {k: model.get_config()[k] for k in NEW_OPTIONS} == LEGACY_OPTIONS


def test_new_options_are_flags():
    fv = flags.FlagValues()
    flags_lib.define_model_flags(fv)
    fv(["prog"])
    opts = flags_lib.model_options(fv)
    assert {k: opts[k] for k in NEW_OPTIONS} == dict(
        bn_epsilon=1e-5,
        memory_temperature_on="cohesion",
        update_network_input="normalized",
        bn_statistics_from="meta_train",
    )
    fv = flags.FlagValues()
    flags_lib.define_model_flags(fv)
    fv(
        [
            "prog",
            "--bn_epsilon=1e-3",
            "--memory_temperature_on=read",
            "--update_network_input=raw",
            "--bn_statistics_from=every_pass",
        ]
    )
    opts = flags_lib.model_options(fv)
    assert {k: opts[k] for k in NEW_OPTIONS} == dict(
        bn_epsilon=1e-3, memory_temperature_on="read", update_network_input="raw", bn_statistics_from="every_pass"
    )
    flags_lib.validate_model_options(opts)
    with pytest.raises(Exception, match="bn_epsilon"):
        flags_lib.validate_model_options(dict(opts, bn_epsilon=0.0))
    with pytest.raises(flags.IllegalFlagValueError):
        fv2 = flags.FlagValues()
        flags_lib.define_model_flags(fv2)
        fv2(["prog", "--bn_statistics_from=meta_test"])


# ------------------------------------------------------------------------------------------ temperature
def _np_cross_entropy(labels, logits, ignore=255):
    logits = logits.astype(np.float64)
    valid = (labels != ignore) & (labels >= 0) & (labels < logits.shape[-1])
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return -(picked * valid).sum() / max(valid.sum(), 1)


def _np_softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def test_cohesion_loss_with_temperature_against_numpy():
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, size=(2, 5, 6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 5, 6)).astype(np.int32)
    labels[0, 0, :3] = 255
    for t in (1.0, 0.5, 0.1):
        np.testing.assert_allclose(
            L.cohesion_loss(labels, scores, temperature=t).numpy(), _np_cross_entropy(labels, scores / t), rtol=1e-5
        )


@pytest.mark.parametrize("on", ["cohesion", "read", "both"])
def test_temperature_placement(on):
    t = 0.25
    model = small_model(memory_temperature=t, memory_temperature_on=on)
    images, _ = episode(np.random.default_rng(2))[0]
    out = model.forward(images, training=False)
    scores = out["scores"].numpy().astype(np.float64)
    read_t = t if on in ("read", "both") else 1.0
    cohesion_t = t if on in ("cohesion", "both") else 1.0
    np.testing.assert_allclose(out["weights"].numpy(), _np_softmax(scores / read_t), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["cohesion_logits"].numpy(), scores / cohesion_t, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("on", ["cohesion", "read"])
def test_cohesion_term_of_the_step_against_numpy(on):
    """The step's cohesion term is eq. 6's cross-entropy of scores / T (or of the scores), upsampled to label
    resolution, computed here in NumPy from the forward pass's scores."""
    t = 0.5
    model = small_model(method="memory_agg", memory_temperature=t, memory_temperature_on=on)
    (images, labels), _ = episode(np.random.default_rng(4))
    _, _, updates = model.compute_meta_gradients((images, labels))
    scores = model.forward(images, training=True)["scores"]  # training mode: batch moments, as the step
    up = resize_bilinear(tf.cast(scores, tf.float32), tf.shape(labels)[1:3]).numpy()
    expected = _np_cross_entropy(labels.numpy(), up / (t if on == "cohesion" else 1.0))
    np.testing.assert_allclose(updates["terms"]["cohesion"].numpy(), expected, rtol=1e-5)


# ------------------------------------------------------------------------------------ update network input
def test_update_network_input():
    rng = np.random.default_rng(3)
    features = tf.constant(rng.normal(size=(2, 4, 4, 8)).astype(np.float32) * 3.0)
    paper = small_model()
    np.testing.assert_allclose(
        paper.update_features(features).numpy(),
        paper.update_network(memory_ops.l2_normalize(features)).numpy(),
        rtol=1e-6,
    )
    reference = small_model(update_network_input="raw")
    np.testing.assert_allclose(
        reference.update_features(features).numpy(), reference.update_network(features).numpy(), rtol=1e-6
    )
    assert np.abs(reference.update_features(features).numpy() - paper.update_features(features).numpy()).max() > 1e-2


# --------------------------------------------------------------------------------- running statistics
def _statistics(model):
    ids = model._batch_norm_statistics()
    return [v.numpy().astype(np.float64) for v in model.non_trainable_variables if id(v) in ids]


def _first_backbone_bn_statistics(model, images, momentum):
    """Expected moving mean/variance of the backbone's first BatchNorm after one training pass on
    ``images`` from its initial values, in NumPy from the tensor that enters it (biased variance)."""
    bn = next(x for x in model.backbone.layers if isinstance(x, keras.layers.BatchNormalization))
    entry = keras.Model(model.backbone.input, bn.input)
    x = np.asarray(entry(tf.cast(images, model.compute_dtype), training=False), np.float64)
    x = x.reshape(-1, x.shape[-1])
    mean0, var0 = bn.moving_mean.numpy().astype(np.float64), bn.moving_variance.numpy().astype(np.float64)
    return bn, momentum * mean0 + (1 - momentum) * x.mean(0), momentum * var0 + (1 - momentum) * x.var(0)


@pytest.mark.parametrize("method", ["mgml", "mldg", "memory_agg", "baseline"])
@pytest.mark.parametrize("source", ["meta_train", "every_pass"])
def test_running_statistics_after_one_step(method, source):
    """After one train_step the moving statistics are those of the meta-train pass alone (meta_train, the
    reference) -- for the aggregate methods, of the aggregated batch under either value. Checked against an
    ordinary forward pass of an identically initialised model on the meta-train batch only, and for the
    backbone's first BatchNorm against NumPy moments of its input."""
    options = dict(method=method, bn_statistics_from=source)
    model, twin = small_model(**options), small_model(**options)
    tr, te = episode(np.random.default_rng(5))
    aggregate = method in ("memory_agg", "baseline")
    images, labels = (tf.concat([tr[0], te[0]], 0), tf.concat([tr[1], te[1]], 0)) if aggregate else tr
    bn, mean, variance = _first_backbone_bn_statistics(model, images, model.model_options["bn_momentum"])

    out = twin.forward(images, training=True)  # assigns the moving statistics of this one pass
    if twin.use_memory:
        twin.updated_memory(twin.memory.value, out["features"], labels, training=True)  # U's BatchNorm
    model.train_step((tr, te))

    if source == "meta_train" or aggregate:
        np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-5, atol=1e-6)
        for ours, theirs in zip(_statistics(model), _statistics(twin)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    else:  # the later passes (M', meta-test) moved them too
        assert np.abs(bn.moving_mean.numpy() - mean).max() > 1e-3
        assert max(np.abs(a - b).max() for a, b in zip(_statistics(model), _statistics(twin))) > 1e-3
