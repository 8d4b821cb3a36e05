"""Keras layers of mgml_tf: normalisation, the categorical memory, its update network and read block."""
from mgml_tf.layers.normalization import MetaBatchNormalization
