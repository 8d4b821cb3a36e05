"""Keras layers of mgml_tf: convolution, normalisation, the categorical memory, its update network and read
block."""

from mgml_tf.layers.convolution import Conv2D, dilated_convolution_path, set_dilated_convolution_mode
from mgml_tf.layers.memory import CategoricalMemory, MemoryReadFuse, MemoryUpdateNetwork
from mgml_tf.layers.normalization import (
    MetaBatchNormalization,
    MetaLayerNormalization,
    batch_norm_path,
    exact_layer_norms,
    set_batch_norm_mode,
)

__all__ = [
    "CategoricalMemory",
    "Conv2D",
    "MemoryReadFuse",
    "MemoryUpdateNetwork",
    "MetaBatchNormalization",
    "MetaLayerNormalization",
    "batch_norm_path",
    "dilated_convolution_path",
    "exact_layer_norms",
    "set_batch_norm_mode",
    "set_dilated_convolution_mode",
]
