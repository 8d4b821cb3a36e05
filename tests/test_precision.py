"""Mixed precision: steps stay finite, the memory stays float32, the inner step is loss-scaled too."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import episode, small_model


@pytest.mark.slow  # mixed-precision steps traced on CPU
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_steps_are_finite_and_memory_float32(policy):
    keras.config.set_dtype_policy(policy)
    model = small_model(meta_order=2)
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    rng = np.random.default_rng(0)
    step = tf.function(model.train_step)
    for _ in range(6):
        logs = step(episode(rng))
        assert all(np.isfinite(float(v)) for v in logs.values()), logs
        assert all(np.isfinite(v.numpy()).all() for v in model.variables)
    # float16 may overflow at the initial loss scale: such steps are skipped, counted, and leave no trace.
    assert float(logs["nonfinite_steps"]) < 6
    assert model.memory.dtype == "float32"
    assert np.isfinite(model.memory.numpy()).all()
    np.testing.assert_allclose(np.linalg.norm(model.memory.numpy(), axis=1), 1.0, rtol=1e-5)
    assert model(episode(rng)[0][0]).dtype == tf.float32


def test_loss_scale_leaves_the_meta_gradient_unchanged():
    """Gradients of s * J divided by s equal those of J (inner step included), in float32."""
    model = small_model(meta_order=2)
    tr, te = episode(np.random.default_rng(1))
    _, plain, _ = model.compute_meta_gradients(tr, te)
    _, scaled, _ = model.compute_meta_gradients(tr, te, loss_scale=1024.0)
    nonzero = [float(np.abs(g.numpy()).max()) > 0 for g in plain]
    assert all(nonzero), [v.path for v, n in zip(model.trainable_variables, nonzero) if not n]
    for a, b in zip(plain, scaled):
        np.testing.assert_allclose(b.numpy() / 1024.0, a.numpy(), rtol=1e-4, atol=1e-7)
