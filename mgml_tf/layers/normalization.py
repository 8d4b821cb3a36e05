"""BatchNormalization whose second-order gradient is right.

Keras 3 on TensorFlow computes batch moments with ``tf.nn.moments``, which takes the variance around
``stop_gradient(mean)``. The first derivative is unaffected (d var / d mean is zero at the true mean), but
the second derivative is not: a meta-gradient through an inner gradient step is off by about 1e-2
relative (reproduced on TF 2.21 / Keras 3.15 in ``tests/test_normalization.py``; docs/DESIGN.md,
"Second-order gradients through BatchNorm").

``MetaBatchNormalization`` computes the variance as ``mean(square(x - mean(x)))`` with the mean kept on the
tape. Under a multi-replica strategy with ``synchronized=True`` it all-reduces the per-channel sums and the count
for the global mean, then the sums of squared deviations from it: the single-device two-pass moments of the
global batch, exact in every order of differentiation (all-reduce is differentiable).

It overrides the private ``BatchNormalization._moments``; the Keras minor version is pinned in setup.cfg
and the finite-difference test guards the override.

Where the normalised tensor is float32 NHWC (after Keras's upcast of half-precision inputs) and no mask or
cross-replica synchronisation is asked for, the layer runs TensorFlow's fused kernel (``FusedBatchNormV3``:
oneDNN on CPU, cuDNN on GPU) in training and in inference instead of Keras's composition of moments and
element-wise ops. Its gradient kernels are exact to second order as well: ``FusedBatchNormGradV3`` has a
registered gradient built from the batch moments with the mean kept, and the fused op gives the batch
statistics no gradient, which nothing here differentiates (they only feed the moving averages). Float64 (the
finite-difference tests), synchronised replicas and masks take the two-pass moments above. The mode
``two_pass`` (:func:`set_batch_norm_mode` or ``MGML_TF_BATCH_NORM=two_pass``) forces those everywhere, for
comparisons; ``auto`` is the default.
"""

import keras
import tensorflow as tf
from keras import ops

from mgml_tf.layers.kernel_mode import KernelMode

#: BatchNorm epsilon of the head and memory blocks (``mgml_tf.models.heads``,
#: ``mgml_tf.layers.memory``): PyTorch's default, what the reference code runs with.
BN_EPSILON = 1e-5
#: What a config saved without ``bn_epsilon`` means: Keras's default, the only value before the option.
LEGACY_BN_EPSILON = 1e-3


class LegacyBNEpsilon:
    """Mixin: ``from_config`` reads a config without ``bn_epsilon`` (saved before the option) as
    ``LEGACY_BN_EPSILON``, so that it still builds the layer it was saved from."""

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.setdefault("bn_epsilon", LEGACY_BN_EPSILON)
        return super().from_config(config)


BATCH_NORM_MODES = ("auto", "two_pass")
_MODE = KernelMode("MGML_TF_BATCH_NORM", BATCH_NORM_MODES, "batch norm mode")


def set_batch_norm_mode(mode):
    """``auto`` (the fused kernel where it applies) or ``two_pass`` (always the two-pass moments), for layers
    called from now on; ``None``: back to ``MGML_TF_BATCH_NORM`` or ``auto``."""
    _MODE.set(mode)


def batch_norm_mode():
    return _MODE.get()


def batch_norm_path(dtype, synchronized_replicas=False):
    """``"fused"`` or ``"two_pass"``: the moments an NHWC BatchNorm in ``dtype`` takes in training (module
    docstring); ``synchronized_replicas``: synchronised across more than one replica."""
    if batch_norm_mode() == "two_pass" or synchronized_replicas:
        return "two_pass"
    return "fused" if keras.backend.result_type(dtype, "float32") == "float32" else "two_pass"


@keras.saving.register_keras_serializable(package="mgml_tf")
class MetaBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with batch moments that are exact to second order, on the fused
    kernel where it applies (module docstring)."""

    def _uses_fused_kernel(self, inputs, mask):
        if mask is not None or self.renorm or len(inputs.shape) != 4 or self.axis not in (-1, 3):
            return False
        replica = tf.distribute.get_replica_context()
        synchronized = self.synchronized and replica is not None and replica.num_replicas_in_sync > 1
        return batch_norm_path(inputs.dtype, synchronized) == "fused"

    def call(self, inputs, training=None, mask=None):
        if not self._uses_fused_kernel(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, "float32")
        channels = x.shape[-1]
        gamma = ops.cast(self.gamma, "float32") if self.scale else tf.ones([channels], "float32")
        beta = ops.cast(self.beta, "float32") if self.center else tf.zeros([channels], "float32")
        moving_mean = ops.cast(self.moving_mean, "float32")
        moving_variance = ops.cast(self.moving_variance, "float32")
        if training and self.trainable:
            out = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=gamma,
                offset=beta,
                mean=tf.zeros([0]),
                variance=tf.zeros([0]),
                epsilon=self.epsilon,
                is_training=True,
            )
            # The kernel returns the unbiased batch variance; Keras averages the biased one.
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
            variance = out.batch_variance * (count - 1.0) / tf.maximum(count, 1.0)
            self.moving_mean.assign(moving_mean * self.momentum + out.batch_mean * (1.0 - self.momentum))
            self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            out = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=gamma,
                offset=beta,
                mean=moving_mean,
                variance=moving_variance,
                epsilon=self.epsilon,
                is_training=False,
            )
        return ops.cast(out.y, self.compute_dtype)

    def _moments(self, inputs, mask):
        if mask is not None:
            return super()._moments(inputs, mask)
        axes = self._reduction_axes
        replica = tf.distribute.get_replica_context()
        if self.synchronized and replica is not None and replica.num_replicas_in_sync > 1:
            # Two passes over the global batch, as on one device: E[x^2] - E[x]^2 in float32 loses
            # everything to cancellation when the variance is small against the mean (e.g. ASPP's pooled
            # branch), and replicas would then drift away from the single-device result.
            shape = tf.shape(inputs)
            count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), inputs.dtype)
            count = replica.all_reduce(tf.distribute.ReduceOp.SUM, count)
            mean = replica.all_reduce(tf.distribute.ReduceOp.SUM, ops.sum(inputs, axis=axes, keepdims=True)) / count
            squares = ops.sum(ops.square(inputs - mean), axis=axes)
            variance = replica.all_reduce(tf.distribute.ReduceOp.SUM, squares) / count
            return ops.squeeze(mean, axis=axes), variance
        mean = ops.mean(inputs, axis=axes, keepdims=True)
        variance = ops.mean(ops.square(inputs - mean), axis=axes)
        return ops.squeeze(mean, axis=axes), variance


@keras.saving.register_keras_serializable(package="mgml_tf")
class MetaLayerNormalization(keras.layers.LayerNormalization):
    """``keras.layers.LayerNormalization`` exact to second order.

    Keras's layer normalisation takes its moments the way BatchNorm does (the variance around
    ``stop_gradient(mean)``), so a meta-gradient through a ViT's LayerNorms is wrong by up to percents (the
    float64 finite-difference test of the meta step through a keras-hub DINOv2 shows it). Here the variance is
    ``mean(square(x - mean(x)))`` with the mean kept on the tape, in at least float32 as Keras computes it.
    """

    def call(self, inputs):
        if self.rms_scaling:
            return super().call(inputs)
        compute = tf.float64 if inputs.dtype == tf.float64 else tf.float32
        x = tf.cast(inputs, compute)
        mean = tf.reduce_mean(x, axis=self.axis, keepdims=True)
        variance = tf.reduce_mean(tf.square(x - mean), axis=self.axis, keepdims=True)
        out = (x - mean) * tf.math.rsqrt(variance + self.epsilon)
        if self.scale:
            out = out * tf.cast(self._broadcast_weight(self.gamma, x), compute)
        if self.center:
            out = out + tf.cast(self._broadcast_weight(self.beta, x), compute)
        return tf.cast(out, self.compute_dtype)

    def _broadcast_weight(self, weight, x):
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        axes = sorted(a % len(x.shape) for a in axes)
        if axes == [len(x.shape) - 1]:
            return weight
        shape = [1] * len(x.shape)
        for a in axes:
            shape[a] = x.shape[a]
        return tf.reshape(weight, shape)


def exact_layer_norms(model):
    """Makes every ``keras.layers.LayerNormalization`` inside ``model`` (a keras-hub backbone) a
    :class:`MetaLayerNormalization`, in place: same variables, same paths, same forward values, a right
    second derivative. Keras-hub builds its layers itself, so they are converted rather than constructed."""
    for layer in model._flatten_layers(include_self=False):
        if type(layer) is keras.layers.LayerNormalization:
            layer.__class__ = MetaLayerNormalization
    return model
