"""Keras layers around the categorical memory (Sec. 3.2, Fig. 3).

- ``CategoricalMemory`` holds ``M`` (``N x C``, non-trainable, float32 even under mixed precision).
- ``MemoryUpdateNetwork`` is ``U``: ``relu(x + BN(conv1x1(x)))``, applied to the L2-normalised ``F`` (the
  paper, Sec. 3.2; the model's ``update_network_input="raw"`` feeds it ``F`` as the reference code does).
- ``MemoryReadFuse`` is eqs. 4-5: read ``M`` with ``q = normalize(F)`` and fuse
  ``R = ReLU(BN(conv1x1([q, W^T M])))``. Options beyond the paper (``mgml_tf.memory`` docstring): a learned
  score scale ``s = exp(log_s)`` (its one trainable scalar ``log_scale``) and mean-row centering of the cosines.

Each layer computes with the memory passed in as a tensor, never assigning it: the meta step runs them on
fast weights and candidate memories. The maths lives in ``mgml_tf.memory``.

Their BatchNorm epsilon (``bn_epsilon``) is PyTorch's 1e-5 by default, as in the reference code; a config saved
before the option existed has no ``bn_epsilon`` key and keeps meaning Keras's 1e-3 (docs/REFERENCE.md).
"""

import math

import keras
import tensorflow as tf

from mgml_tf import memory as memory_ops
from mgml_tf.config import MEMORY_SCORE_SCALES
from mgml_tf.layers.normalization import BN_EPSILON, LegacyBNEpsilon, MetaBatchNormalization


def _memory_dtype(policy):
    """float32 under float16/bfloat16 policies, float64 under a float64 policy
    (docs/DESIGN.md#the-memory-and-its-precision)."""
    return "float64" if policy.variable_dtype == "float64" else "float32"


@keras.saving.register_keras_serializable(package="mgml_tf")
class CategoricalMemory(keras.layers.Layer):
    """The memory ``M``: one row per class, ``num_classes x channels``, rows of unit norm once written.

    A non-trainable variable; it starts at zero (no class seen) and is written by
    ``mgml_tf.memory.initial_memory`` / ``update_memory`` through ``assign``. Its dtype is float32 whatever
    the compute dtype (float64 when the whole model is float64, as in the gradient tests).
    """

    def __init__(self, num_classes, channels, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.memory = self.add_weight(
            name="memory",
            shape=(self.num_classes, self.channels),
            initializer="zeros",
            trainable=False,
            dtype=_memory_dtype(self.dtype_policy),
            autocast=False,
        )
        self.built = True

    def call(self, features):
        """Reads the current memory: ``(readout, weights)`` of eq. 4 for ``features [B, h, w, C]``."""
        return memory_ops.read_memory(self.memory, features)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "channels": self.channels}


class _Conv1x1BatchNorm(LegacyBNEpsilon, keras.layers.Layer):
    """Shared part of U and the fusion block: a bias-free 1x1 convolution to ``channels`` and a
    ``MetaBatchNormalization``; subclasses say what goes in and around them."""

    def __init__(self, channels, bn_momentum=0.9, synchronized_bn=False, bn_epsilon=BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.bn_momentum = bn_momentum
        self.synchronized_bn = synchronized_bn
        self.bn_epsilon = float(bn_epsilon)
        self.conv = keras.layers.Conv2D(self.channels, 1, use_bias=False, dtype=self.dtype_policy, name="conv")
        self.norm = MetaBatchNormalization(
            momentum=bn_momentum,
            epsilon=self.bn_epsilon,
            synchronized=synchronized_bn,
            dtype=self.dtype_policy,
            name="bn",
        )

    def _build_parts(self, input_shape, in_channels):
        self.conv.build(tuple(input_shape[:-1]) + (in_channels,))
        self.norm.build(tuple(input_shape[:-1]) + (self.channels,))
        self.built = True

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "bn_momentum": self.bn_momentum,
            "synchronized_bn": self.synchronized_bn,
            "bn_epsilon": self.bn_epsilon,
        }


@keras.saving.register_keras_serializable(package="mgml_tf")
class MemoryUpdateNetwork(_Conv1x1BatchNorm):
    """``U(x) = relu(x + BN(conv1x1(x)))`` (the paper's 1x1 convolution with a residual connection).

    Input is the L2-normalised encoder feature map; the output ``Z`` is normalised again inside
    ``update_memory``.
    """

    def build(self, input_shape):
        self._build_parts(input_shape, self.channels)

    def call(self, x, training=None):
        return keras.ops.relu(x + self.norm(self.conv(x), training=training))

    def compute_output_shape(self, input_shape):
        return input_shape


SCORE_SCALES = MEMORY_SCORE_SCALES


class _AtMost(keras.constraints.Constraint):
    """Clips a variable to at most ``limit`` after each optimiser step (the learned log score scale)."""

    def __init__(self, limit):
        self.limit = float(limit)

    def __call__(self, w):
        return keras.ops.minimum(w, keras.ops.convert_to_tensor(self.limit, dtype=w.dtype))

    def get_config(self):
        return {"limit": self.limit}


@keras.saving.register_keras_serializable(package="mgml_tf")
class MemoryReadFuse(_Conv1x1BatchNorm):
    """Eqs. 4-5: ``R = ReLU(BN(conv1x1([q, W^T M])))``, ``2C -> C`` channels, no conv bias.

    ``call(features, memory, gumbel_noise=None)`` returns ``(R, weights, scores)``: the memory-guided
    feature map, the memory weights ``W`` and the cosine scores (for the cohesion loss, eq. 6). The read
    itself runs in the memory's dtype (float32 under mixed precision); the fusion in the compute dtype.

    ``score_scale="fixed"`` (the paper): ``W = softmax(scores / temperature)``. ``"learned"``: a trainable
    scalar ``log_scale`` (initialised at ``log(initial_scale)``, clipped to at most log 100 in the read and
    after each optimiser step) gives ``W = softmax(exp(log_scale) * scores)``; ``temperature`` must then be 1.
    ``centering="mean_row"``: ``scores`` are the mean-row-centred cosines (``mgml_tf.memory.centered_scores``).
    A config saved before these arguments existed has no keys for them and means ``fixed`` and ``none``.
    """

    def __init__(
        self,
        channels,
        temperature=1.0,
        bn_momentum=0.9,
        synchronized_bn=False,
        bn_epsilon=BN_EPSILON,
        score_scale="fixed",
        initial_scale=1.0,
        centering="none",
        **kwargs,
    ):
        super().__init__(
            channels, bn_momentum=bn_momentum, synchronized_bn=synchronized_bn, bn_epsilon=bn_epsilon, **kwargs
        )
        if score_scale not in SCORE_SCALES:
            raise ValueError(f"unknown score_scale {score_scale!r}; choose one of {list(SCORE_SCALES)}")
        if centering not in memory_ops.MEMORY_CENTERINGS:
            raise ValueError(f"unknown centering {centering!r}; choose one of {list(memory_ops.MEMORY_CENTERINGS)}")
        if not float(initial_scale) > 0.0:
            raise ValueError(f"initial_scale must be positive, got {initial_scale}")
        if score_scale == "learned" and float(temperature) != 1.0:
            raise ValueError("a learned score scale reads at temperature 1 (the temperature sets initial_scale)")
        self.temperature = float(temperature)
        self.score_scale = score_scale
        self.initial_scale = float(initial_scale)
        self.centering = centering
        self.log_scale = None

    def build(self, input_shape):
        if self.score_scale == "learned" and self.log_scale is None:
            self.log_scale = self.add_weight(
                name="log_scale",
                shape=(),
                initializer=keras.initializers.Constant(math.log(self.initial_scale)),
                trainable=True,
                dtype=_memory_dtype(self.dtype_policy),
                autocast=False,
                constraint=_AtMost(memory_ops.MAX_LOG_SCORE_SCALE),
            )
        self._build_parts(input_shape, 2 * self.channels)

    def scale(self, dtype=tf.float32):
        """The factor of the scores in the read logits (a scalar ``dtype`` tensor): ``exp(min(log_scale,
        log 100))`` when learned (the current or, inside the meta step, the fast-weight value), else
        ``1 / temperature``."""
        if self.score_scale == "learned":
            return tf.cast(memory_ops.score_scale(tf.convert_to_tensor(self.log_scale.value)), dtype)
        return tf.constant(1.0 / self.temperature, dtype)

    def call(self, features, memory, gumbel_noise=None, training=None):
        memory = tf.convert_to_tensor(memory)
        if memory.dtype in (tf.float16, tf.bfloat16):
            memory = tf.cast(memory, tf.float32)
        scale = self.scale(memory.dtype) if self.score_scale == "learned" else None
        readout, weights, scores = memory_ops.read_memory_with_scores(
            memory, features, gumbel_noise, self.temperature, scale=scale, centering=self.centering
        )
        query = memory_ops.l2_normalize(tf.cast(features, memory.dtype))
        fused = tf.concat([query, readout], axis=-1)
        fused = tf.cast(fused, self.compute_dtype)
        r = keras.ops.relu(self.norm(self.conv(fused), training=training))
        return r, weights, scores

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "score_scale": self.score_scale,
            "initial_scale": self.initial_scale,
            "centering": self.centering,
        }
