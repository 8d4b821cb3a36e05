"""Keras layers of mgml_tf: normalisation, the categorical memory, its update network and read block."""
from mgml_tf.layers.normalization import MetaBatchNormalization
from mgml_tf.layers.memory import CategoricalMemory, MemoryReadFuse, MemoryUpdateNetwork
