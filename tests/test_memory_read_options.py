"""Options of the memory read beyond the paper (mgml_tf.memory docstring, docs/REFERENCE.md): a learned score
scale s = exp(log_s) on the read and cohesion logits, and mean-row centering of the cosines. Forward pass and
cohesion term against NumPy, the whole meta step against float64 central differences (second order, also in
log_s), training and saving of the scale, flags and configurations; the defaults change nothing."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from mgml_tf.cli import flags as flags_lib
from mgml_tf.layers import MemoryReadFuse
from mgml_tf.models.segmenter import MemorySegmenter
from mgml_tf.ops import resize_bilinear
from mgml_tf.training import model_dir as md
from tests.helpers import episode, small_model
from tests.test_meta_learning import LR, directional_check, objective_at

OPTIONS = ("memory_score_scale", "memory_centering")


def _np_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _np_softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _np_cross_entropy(labels, logits, ignore=255):
    valid = (labels != ignore) & (labels >= 0) & (labels < logits.shape[-1])
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return -(picked * valid).sum() / max(valid.sum(), 1)


def _np_scores(memory, features, centering):
    q = _np_normalize(features.astype(np.float64))
    memory = memory.astype(np.float64)
    if centering == "none":
        return q @ memory.T
    mean_row = memory.mean(0)  # every row of the test memory holds a class
    return _np_normalize(q - mean_row) @ _np_normalize(memory - mean_row).T


# ----------------------------------------------------------------------------------------- forward pass
@pytest.mark.parametrize("scale, centering", [("learned", "none"), ("learned", "mean_row"), ("fixed", "mean_row")])
def test_forward_against_numpy(scale, centering):
    """scores are the (centred) cosines, score_scale the factor of the read logits, W = softmax(score_scale *
    scores), cohesion_logits = s * scores when learned; T sets the initial s and nothing else."""
    t = 0.25
    model = small_model(
        memory_score_scale=scale, memory_centering=centering, memory_temperature=t, memory_temperature_on="both"
    )
    if scale == "learned":
        np.testing.assert_allclose(model.memory_fuse.log_scale.numpy(), math.log(1 / t), rtol=1e-6)
        model.memory_fuse.log_scale.assign(math.log(6.0))
    images, _ = episode(np.random.default_rng(2))[0]
    out = model.forward(images, training=False)
    scores = _np_scores(model.memory.numpy(), out["features"].numpy(), centering)
    np.testing.assert_allclose(out["scores"].numpy(), scores, rtol=1e-5, atol=1e-6)
    s = 6.0 if scale == "learned" else 1 / t
    np.testing.assert_allclose(float(out["score_scale"]), s, rtol=1e-6)
    np.testing.assert_allclose(out["weights"].numpy(), _np_softmax(s * scores), rtol=1e-4, atol=1e-6)
    cohesion = s * scores if scale == "learned" else scores / t
    np.testing.assert_allclose(out["cohesion_logits"].numpy(), cohesion, rtol=1e-5, atol=1e-5)


def test_learned_scale_ignores_temperature_placement():
    models = [
        small_model(memory_score_scale="learned", memory_temperature=0.5, memory_temperature_on=on)
        for on in ("cohesion", "read", "both")
    ]
    images, _ = episode(np.random.default_rng(3))[0]
    outs = [m.forward(images, training=False) for m in models]
    for out in outs[1:]:
        for key in ("weights", "cohesion_logits", "logits", "score_scale"):
            np.testing.assert_array_equal(out[key].numpy(), outs[0][key].numpy())
    np.testing.assert_allclose(float(outs[0]["score_scale"]), 2.0, rtol=1e-6)


@pytest.mark.parametrize("centering", ["none", "mean_row"])
def test_cohesion_term_of_the_step_against_numpy(centering):
    """The step's cohesion term is eq. 6's cross-entropy of s * scores, upsampled to label resolution."""
    model = small_model(method="memory_agg", memory_score_scale="learned", memory_centering=centering)
    model.memory_fuse.log_scale.assign(math.log(5.0))
    (images, labels), _ = episode(np.random.default_rng(4))
    _, _, updates = model.compute_meta_gradients((images, labels))
    scores = model.forward(images, training=True)["scores"]  # training mode: batch moments, as the step
    up = resize_bilinear(tf.cast(scores, tf.float32), tf.shape(labels)[1:3]).numpy().astype(np.float64)
    np.testing.assert_allclose(
        updates["terms"]["cohesion"].numpy(), _np_cross_entropy(labels.numpy(), 5.0 * up), rtol=1e-5
    )


# ------------------------------------------------------------------------------------- meta gradients
@pytest.mark.parametrize(
    "options",
    [
        dict(memory_score_scale="learned"),
        dict(memory_centering="mean_row"),
        dict(memory_score_scale="learned", memory_centering="mean_row"),
    ],
)
def test_gradient_matches_finite_differences(options):
    """dJ/dtheta of the whole second-order step (inner step with log_s among the fast weights, M', outer read)
    against central differences in random directions and, with a learned scale, along log_s alone."""
    model = small_model(float64=True, meta_order=2, memory_prime_freeze="none", **options)
    learned = options.get("memory_score_scale") == "learned"
    if learned:
        model.memory_fuse.log_scale.assign(math.log(4.0))  # away from 1: the scale must matter
    tr, te = episode(np.random.default_rng(0), dtype=np.float64)
    for seed in (0, 1):
        # eps 1e-6: at s = 4 the objective is ~30x steeper than at s = 1 and curved enough that the central
        # difference at 1e-5 is off by its own O(eps^2) error (1e-5 relative; 1e-7 at 1e-6, 1e-2 at 1e-4)
        analytic, numeric = directional_check(model, tr, te, seed=seed, eps=1e-6)
        assert abs(analytic - numeric) / abs(numeric) < 1e-5, (analytic, numeric)
    if not learned:
        return
    variables = model.trainable_variables
    index = next(i for i, v in enumerate(variables) if v is model.memory_fuse.log_scale)
    theta0 = [v.numpy() for v in variables]
    _, grads, _ = model.compute_meta_gradients(tr, te, learning_rate=LR)
    eps = 1e-6

    def shifted(d):
        return [t + d if i == index else t for i, t in enumerate(theta0)]

    numeric = (objective_at(model, shifted(eps), tr, te) - objective_at(model, shifted(-eps), tr, te)) / (2 * eps)
    objective_at(model, theta0, tr, te)
    analytic = float(grads[index].numpy())
    assert abs(numeric) > 1e-4, numeric
    assert abs(analytic - numeric) / abs(numeric) < 1e-5, (analytic, numeric)
    # The second-order path through log_s is there: the first-order gradient differs.
    model.set_training_options(meta_order=1)
    try:
        _, first, _ = model.compute_meta_gradients(tr, te, learning_rate=LR)
    finally:
        model.set_training_options(meta_order=2)
    assert abs(float(first[index].numpy()) - analytic) > 1e-8 * abs(analytic)


# -------------------------------------------------------------------------------- training and saving
def test_learned_scale_trains_without_weight_decay_and_is_clipped():
    model = small_model(memory_score_scale="learned", weight_decay=0.1)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05))
    tr, te = episode(np.random.default_rng(1))
    log_s = model.memory_fuse.log_scale
    index = [i for i, v in enumerate(model.trainable_variables) if v is log_s]
    assert len(index) == 1 and log_s.dtype == "float32"
    before = [v.numpy() for v in model.trainable_variables]
    _, grads, _ = model.compute_meta_gradients(tr, te, learning_rate=0.05)
    model.train_step((tr, te))
    after = [v.numpy() for v in model.trainable_variables]
    for v, b, a, g in zip(model.trainable_variables, before, after, grads):
        decay = 0.0 if v is log_s else 0.1
        np.testing.assert_allclose(a, b - 0.05 * (g.numpy() + decay * b), rtol=1e-4, atol=1e-6, err_msg=v.path)
    assert abs(float(log_s.numpy()) - float(before[index[0]])) > 1e-7
    log_s.assign(5.0)  # beyond log 100: read as 100, and clipped to log 100 by the next step
    out = model.forward(tr[0])
    np.testing.assert_allclose(float(out["score_scale"]), 100.0, rtol=1e-5)
    model.train_step((tr, te))
    assert float(log_s.numpy()) <= math.log(100.0) + 1e-6


def test_learned_scale_survives_keras_round_trip(tmp_path):
    model = small_model(memory_score_scale="learned", memory_centering="mean_row")
    model.compile()
    tr, te = episode(np.random.default_rng(6))
    model.train_step((tr, te))
    value = model.memory_fuse.log_scale.numpy()
    assert value != 0.0
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert {k: loaded.get_config()[k] for k in OPTIONS} == dict(
        memory_score_scale="learned", memory_centering="mean_row"
    )
    assert loaded.memory_fuse.log_scale.numpy() == value
    np.testing.assert_array_equal(loaded(tr[0]).numpy(), model(tr[0]).numpy())


def test_config_round_trip_and_configs_without_the_keys():
    config = small_model(memory_score_scale="learned", memory_centering="mean_row", memory_temperature=0.5).get_config()
    again = MemorySegmenter.from_config(config)
    assert {k: again.get_config()[k] for k in OPTIONS} == dict(
        memory_score_scale="learned", memory_centering="mean_row"
    )
    assert again.memory_fuse.log_scale is not None
    old = MemorySegmenter.from_config({k: v for k, v in config.items() if k not in OPTIONS})
    assert {k: old.get_config()[k] for k in OPTIONS} == dict(memory_score_scale="fixed", memory_centering="none")
    assert old.memory_fuse.log_scale is None
    layer = MemoryReadFuse(4, score_scale="learned", initial_scale=2.0, centering="mean_row")
    layer_config = layer.get_config()
    assert {k: layer_config[k] for k in ("score_scale", "initial_scale", "centering")} == dict(
        score_scale="learned", initial_scale=2.0, centering="mean_row"
    )
    for key in ("score_scale", "initial_scale", "centering"):
        del layer_config[key]
    plain = MemoryReadFuse.from_config(layer_config)
    assert (plain.score_scale, plain.centering) == ("fixed", "none")
    with pytest.raises(ValueError, match="unknown memory_score_scale"):
        small_model(memory_score_scale="adaptive")
    with pytest.raises(ValueError, match="unknown memory_centering"):
        small_model(memory_centering="mean")
    with pytest.raises(ValueError, match="temperature 1"):
        MemoryReadFuse(4, temperature=0.5, score_scale="learned")


def test_defaults_change_nothing():
    """The options at their defaults are the model without them: no new variable, identical outputs and
    gradients bit for bit (and the tests/data fixtures still load: test_convolution)."""
    implicit = small_model()
    explicit = small_model(memory_score_scale="fixed", memory_centering="none")
    assert implicit.memory_fuse.log_scale is None
    assert [v.path for v in implicit.variables] == [v.path for v in explicit.variables]
    tr, te = episode(np.random.default_rng(8))
    for training in (False, True):
        a, b = implicit.forward(tr[0], training=training), explicit.forward(tr[0], training=training)
        for key in ("weights", "scores", "cohesion_logits", "logits", "aux_logits"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
        np.testing.assert_array_equal(a["score_scale"].numpy(), 1.0)
    _, ga, _ = implicit.compute_meta_gradients(tr, te)
    _, gb, _ = explicit.compute_meta_gradients(tr, te)
    for x, y in zip(ga, gb):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


# ----------------------------------------------------------------------------------- flags, model_dir
def test_flags_and_model_dir_architecture():
    fv = flags.FlagValues()
    flags_lib.define_model_flags(fv)
    fv(["prog"])
    assert {k: flags_lib.model_options(fv)[k] for k in OPTIONS} == dict(
        memory_score_scale="fixed", memory_centering="none"
    )
    fv = flags.FlagValues()
    flags_lib.define_model_flags(fv)
    fv(["prog", "--memory_score_scale=learned", "--memory_centering=mean_row"])
    opts = flags_lib.model_options(fv)
    assert {k: opts[k] for k in OPTIONS} == dict(memory_score_scale="learned", memory_centering="mean_row")
    for bad in ("--memory_score_scale=adaptive", "--memory_centering=mean"):
        with pytest.raises(flags.IllegalFlagValueError):
            fv2 = flags.FlagValues()
            flags_lib.define_model_flags(fv2)
            fv2(["prog", bad])
    # The learned scale is a variable: a model_dir of one kind cannot resume as the other; a flags.json saved
    # before the option means fixed.
    assert md.resolved_architecture(opts)["memory_score_scale"] == "learned"
    saved = dict(opts)
    del saved["memory_score_scale"]
    assert md.resolved_architecture(saved)["memory_score_scale"] == "fixed"
    assert md.resolved_architecture(dict(opts, method="baseline"))["memory_score_scale"] is None


def test_checkpoint_reveals_the_learned_scale(tmp_path):
    """Without flags.json, resuming compares the options with the checkpoint's variables: log_scale or not."""
    from mgml_tf.training import checkpoints

    for scale, other in (("learned", "fixed"), ("fixed", "learned")):
        model = small_model(memory_score_scale=scale)
        path = checkpoints.checkpoint_object(model).write(str(tmp_path / scale))
        assert md.checkpoint_architecture(path)["memory_score_scale"] == scale
        assert md.checkpoint_differences(path, dict(model.get_config(), memory_score_scale=other)) == [
            f"memory_score_scale={scale!r} (checkpoint) vs {other!r} (now)"
        ]
        assert md.checkpoint_differences(path, model.get_config()) == []
