"""BatchNormalization whose second-order gradient is right.

Keras 3 on TensorFlow computes batch moments with ``tf.nn.moments``, which takes the variance around
``stop_gradient(mean)``. The first derivative is unaffected (d var / d mean is zero at the true mean), but
the second derivative is not: a meta-gradient through an inner gradient step is off by about 1e-2
relative (DESIGN §5, reproduced on TF 2.21 / Keras 3.15 in ``tests/test_normalization.py``).

``MetaBatchNormalization`` computes the variance as ``mean(square(x - mean(x)))`` with the mean kept on the
tape. Under a multi-replica strategy with ``synchronized=True`` it all-reduces the per-channel sums and the count
for the global mean, then the sums of squared deviations from it: the single-device two-pass moments of the
global batch, exact in every order of differentiation (all-reduce is differentiable).

It overrides the private ``BatchNormalization._moments``; the Keras minor version is pinned in setup.cfg
and the finite-difference test guards the override.
"""
import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="mgml_tf")
class MetaBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with batch moments that are exact to second order."""

    def _moments(self, inputs, mask):
        if mask is not None:
            return super()._moments(inputs, mask)
        axes = self._reduction_axes
        replica = tf.distribute.get_replica_context()
        if (self.synchronized and replica is not None
                and replica.num_replicas_in_sync > 1):
            # Two passes over the global batch, as on one device: E[x^2] - E[x]^2 in float32 loses
            # everything to cancellation when the variance is small against the mean (e.g. ASPP's pooled
            # branch), and replicas would then drift away from the single-device result.
            shape = tf.shape(inputs)
            count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), inputs.dtype)
            count = replica.all_reduce(tf.distribute.ReduceOp.SUM, count)
            mean = replica.all_reduce(tf.distribute.ReduceOp.SUM,
                                      ops.sum(inputs, axis=axes, keepdims=True)) / count
            squares = ops.sum(ops.square(inputs - mean), axis=axes)
            variance = replica.all_reduce(tf.distribute.ReduceOp.SUM, squares) / count
            return ops.squeeze(mean, axis=axes), variance
        mean = ops.mean(inputs, axis=axes, keepdims=True)
        variance = ops.mean(ops.square(inputs - mean), axis=axes)
        return ops.squeeze(mean, axis=axes), variance
