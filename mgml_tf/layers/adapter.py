"""``TokenAdapter``: learnable tokens that refine a frozen ViT's features layer by layer, in the manner of
Rein (Wei et al., "Stronger, Fewer, & Superior: Harnessing Vision Foundation Models for Domain Generalized
Semantic Segmentation", CVPR 2024), written here from the paper's description.

For layer ``i`` with patch features ``f`` (``[B, N, C]``) and tokens ``T_i = A_i B_i`` (``m x C``, low rank
``r``)::

    S       = softmax(f T_i^T / sqrt(C))            # each feature's attention over the m tokens
    dF_bar  = S (T_i W_T + b_T)                      # what the tokens say about that feature
    dF      = (dF_bar + f) W_f + b_f                 # mapped back to a feature change
    f      <- f + dF                                 # the refined features enter layer i + 1

Choices the description leaves open, taken here: ``W_T, b_T, W_f, b_f`` are shared by all layers (only the
tokens are per layer); ``W_f`` and ``b_f`` start at zero, so an untrained adapter leaves the backbone's
features exactly as they are; class and register tokens pass unchanged (only patch features are refined).
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mgml_tf")
class TokenAdapter(keras.layers.Layer):
    """Per-layer learnable tokens refining ViT patch features (see the module docstring).

    Args:
        num_layers: transformer layers refined (one token set each).
        hidden_dim: the ViT's feature width ``C``.
        num_tokens: tokens per layer ``m`` (Rein: 100).
        rank: rank ``r`` of each layer's tokens ``T_i = A_i B_i``.
    """

    def __init__(self, num_layers, hidden_dim, num_tokens=100, rank=16, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.hidden_dim = int(num_layers), int(hidden_dim)
        self.num_tokens, self.rank = int(num_tokens), int(rank)
        for name, value in (("num_layers", self.num_layers), ("num_tokens", self.num_tokens), ("rank", self.rank)):
            if value < 1:
                raise ValueError(f"TokenAdapter {name} must be at least 1, got {value}")
        layers, m, r, c = self.num_layers, self.num_tokens, self.rank, self.hidden_dim
        self.token_a = self.add_weight(shape=(layers, m, r), initializer="glorot_uniform", name="token_a")
        self.token_b = self.add_weight(shape=(layers, r, c), initializer="glorot_uniform", name="token_b")
        self.token_kernel = self.add_weight(shape=(c, c), initializer="glorot_uniform", name="token_kernel")
        self.token_bias = self.add_weight(shape=(c,), initializer="zeros", name="token_bias")
        self.feature_kernel = self.add_weight(shape=(c, c), initializer="zeros", name="feature_kernel")
        self.feature_bias = self.add_weight(shape=(c,), initializer="zeros", name="feature_bias")
        self.built = True

    def tokens(self, layer_index):
        """``T_i = A_i B_i`` (``m x C``)."""
        return ops.matmul(self.token_a[layer_index], self.token_b[layer_index])

    def call(self, features, layer_index):
        """``f + dF`` for patch features ``[B, N, C]`` after layer ``layer_index`` (0-based)."""
        dtype = features.dtype
        tokens = ops.cast(self.tokens(layer_index), dtype)
        scores = ops.einsum("bnc,mc->bnm", features, tokens) / math.sqrt(self.hidden_dim)
        attention = ops.softmax(scores, axis=-1)
        values = ops.matmul(tokens, ops.cast(self.token_kernel, dtype)) + ops.cast(self.token_bias, dtype)
        delta_bar = ops.einsum("bnm,mc->bnc", attention, values)
        delta = ops.matmul(delta_bar + features, ops.cast(self.feature_kernel, dtype)) + ops.cast(
            self.feature_bias, dtype
        )
        return features + delta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "num_tokens": self.num_tokens,
            "rank": self.rank,
        }
