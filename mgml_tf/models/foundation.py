"""Foundation backbones from keras-hub (DINOv2, DINOv3) as feature maps for the heads and the memory.

``--backbone`` takes, beside the built-in ResNets, a keras-hub preset: a name (``dinov2_base``,
``dinov3_vit_small_lvd1689m``; downloaded once, needs the network), a handle (``kaggle://...``,
``hf://...``) or a local preset directory (``Backbone.save_to_preset``). ``FoundationBackbone`` runs the
ViT token by token and returns what ``ResNetBackbone`` returns, ``{"low_level", "aux", "high_level"}``:

- the neck: class and register tokens dropped, patch tokens reshaped to their grid (stride = the patch size,
  14 for DINOv2, 16 for DINOv3); ``high_level`` is the last layer after the backbone's final LayerNorm,
  ``aux`` the layer at 3/4 depth, ``low_level`` the layer at 1/4 depth upsampled 4x (stride patch/4), the
  three depths Rein-style decoders and DeepLabV3+'s low-level path use; at ``output_stride=8`` the
  ``high_level`` and ``aux`` grids are upsampled 2x (``mgml_tf.ops.resize_bilinear``, twice differentiable);
- any input size, square or not: DINOv2's learned position embeddings (a grid for the preset's
  ``image_shape``) are resized bilinearly to the input's patch grid (keras-hub's own backbone takes only its
  ``image_shape``; its bicubic resize has no second derivative in TensorFlow); DINOv3's rotary embeddings
  are computed for the input's grid by keras-hub's own layer. At the preset's ``image_shape`` the features
  equal keras-hub's functional backbone's;
- every LayerNormalization of the ViT exact to second order (``mgml_tf.layers.MetaLayerNormalization``;
  Keras's takes the variance around ``stop_gradient(mean)``);
- tuning (``backbone_tuning``): ``full``; ``frozen``; ``lora`` (keras-hub's ``enable_lora``: low-rank updates
  of the attention's query and value projections, the rest frozen); ``adapter`` (``mgml_tf.layers.adapter``,
  learnable tokens per layer, the backbone frozen). Only trainable variables enter the meta step's inner
  update; frozen ones flow through it as state.

Images are float RGB in 0..255, scaled to 0..1 and normalised with the ImageNet mean and standard deviation
(the convention of the DINOv2 and DINOv3 presets).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from mgml_tf.config import BACKBONE_TUNINGS, BACKBONES
from mgml_tf.errors import one_line
from mgml_tf.layers.adapter import TokenAdapter
from mgml_tf.layers.normalization import exact_layer_norms
from mgml_tf.ops import resize_bilinear

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUPPORTED = ("DINOV2Backbone", "DINOV3Backbone")
#: Above this many backbone parameters the meta step defaults to first order (docs/FOUNDATION.md, "Second or
#: first order"): ViT-S and ViT-B (22M, 86M) keep the paper's second order, ViT-L (304M) and larger do not.
SECOND_ORDER_MAX_PARAMS = 100_000_000


def is_foundation(name: str) -> bool:
    """Whether ``--backbone=name`` names a keras-hub preset (anything that is not a built-in ResNet)."""
    return name not in BACKBONES


def _import_keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise ValueError("keras-hub backbones need the keras-hub package: pip install 'keras-hub==0.32.*'") from None
    return keras_hub


def _supported_presets(keras_hub):
    return sorted(keras_hub.models.DINOV2Backbone.presets) + sorted(keras_hub.models.DINOV3Backbone.presets)


def check_backbone_spec(spec: str) -> None:
    """Refuses, in one line and before any download, a ``--backbone`` that is neither built in nor a usable
    keras-hub preset: a missing directory, one without ``config.json`` or of an unsupported class, an unknown
    preset name, or a preset of another architecture. Handles (``kaggle://``, ``hf://``) are checked when
    loaded."""
    if not is_foundation(spec) or "://" in spec:
        return
    keras_hub = _import_keras_hub()
    if os.sep in spec or spec.startswith(".") or os.path.exists(spec):
        config = os.path.join(spec, "config.json")
        if not os.path.isdir(spec):
            raise ValueError(f"backbone preset directory {spec} not found")
        if not os.path.isfile(config):
            raise ValueError(
                f"{spec} is not a keras-hub preset directory (no config.json); write one with "
                "backbone.save_to_preset(dir)"
            )
        try:
            with open(config) as f:
                kind = json.load(f).get("class_name")
        except (OSError, ValueError, AttributeError) as e:
            raise ValueError(f"cannot read {config}: {one_line(e)}") from None
        _check_kind(kind, spec)
        return
    if spec in keras_hub.models.DINOV2Backbone.presets or spec in keras_hub.models.DINOV3Backbone.presets:
        return
    if spec in keras_hub.models.Backbone.presets:
        _check_kind(f"a {keras_hub.models.Backbone.presets[spec]['metadata'].get('path', 'other')} backbone", spec)
    raise ValueError(
        f"unknown backbone {spec!r}; choose one of {list(BACKBONES)}, a DINOv2/DINOv3 preset name "
        f"({', '.join(_supported_presets(keras_hub))}), a keras-hub handle (kaggle://..., hf://...) or a local "
        "preset directory"
    )


def _check_kind(kind, spec):
    if kind not in SUPPORTED:
        raise ValueError(
            f"--backbone={spec} is {kind}, not supported; supported: DINOv2 and DINOv3 presets "
            f"({', '.join(SUPPORTED)}), or a built-in ResNet ({', '.join(BACKBONES)}; ImageNet weights with "
            "--backbone_weights=imagenet)"
        )


def load_preset(spec: str, dtype=None) -> keras.Model:
    """The keras-hub backbone of a preset name, handle or local directory, with its weights (one-line
    ``ValueError`` for anything that does not load)."""
    keras_hub = _import_keras_hub()
    check_backbone_spec(spec)
    try:
        hub = keras_hub.models.Backbone.from_preset(spec, dtype=dtype)
    except tf.errors.OpError:
        raise  # TensorFlow's own (a lost worker while variables are broadcast): not the preset's fault
    except Exception as e:  # noqa: BLE001 (keras-hub and kagglehub raise many types: one line for all)
        raise ValueError(
            f"cannot load keras-hub preset {spec!r} as --backbone ({one_line(e)}); a preset name or handle is "
            "downloaded once and needs the network (then it is cached); or give a local preset directory"
        ) from None
    _check_kind(type(hub).__name__, spec)
    return hub


def architecture_of(hub: keras.Model) -> dict:
    """The serialised keras-hub backbone without weights: rebuilds it with no preset and no network."""
    return keras.saving.serialize_keras_object(hub)


def from_architecture(architecture: dict, dtype=None) -> keras.Model:
    _import_keras_hub()  # registers the keras-hub classes
    architecture = {**architecture, "config": dict(architecture["config"])}
    if dtype is not None:
        architecture["config"]["dtype"] = keras.dtype_policies.serialize(keras.dtype_policies.get(dtype))
    return keras.saving.deserialize_keras_object(architecture)


def _lora_factors_in_variable_dtype(hub):
    """Keras creates LoRA factors in float32 whatever the layer's dtype (safe for half-precision training); a
    float64 model (the finite-difference checks) takes them in float64, else every meta-gradient through
    them carries float32 rounding. Uses Keras's variable tracker (the Keras minor is pinned)."""
    for layer in hub._flatten_layers(include_self=False):
        if not getattr(layer, "lora_enabled", False) or layer.variable_dtype != "float64":
            continue
        layer._tracker.unlock()
        for name in ("lora_kernel_a", "lora_kernel_b"):
            old = getattr(layer, name)
            layer._untrack_variable(old)
            initial = keras.initializers.Constant(old.numpy())
            setattr(layer, name, layer.add_weight(name=name, shape=old.shape, initializer=initial, dtype="float64"))
        layer._tracker.lock()


class FoundationBackbone(keras.layers.Layer):
    """A keras-hub ViT as ``{"low_level", "aux", "high_level"}`` feature maps (see the module docstring).

    Args:
        hub: a keras-hub ``DINOV2Backbone`` or ``DINOV3Backbone``.
        output_stride: 16 (the patch grid) or 8 (the grid upsampled 2x).
        tuning: one of ``BACKBONE_TUNINGS``.
        lora_rank: rank of the LoRA updates (``tuning="lora"``).
        adapter_tokens, adapter_rank: tokens per layer and their rank (``tuning="adapter"``).
    """

    def __init__(
        self,
        hub,
        output_stride=16,
        tuning="full",
        lora_rank=8,
        adapter_tokens=100,
        adapter_rank=16,
        **kwargs,
    ):
        super().__init__(**kwargs)
        kind = type(hub).__name__
        _check_kind(kind, hub.name)
        if output_stride not in (8, 16):
            raise ValueError(
                f"a ViT backbone's output_stride is its patch grid (16) or the grid upsampled 2x (8), got "
                f"{output_stride}; use --output_stride=16 or 8"
            )
        if tuning not in BACKBONE_TUNINGS:
            raise ValueError(f"unknown backbone_tuning {tuning!r}; choose one of {list(BACKBONE_TUNINGS)}")
        # Keras's LayerNormalization drops part of the second derivative (MetaLayerNormalization): the meta
        # step differentiates through the ViT twice.
        self.hub, self.kind = exact_layer_norms(hub), kind
        self.output_stride, self.tuning = int(output_stride), tuning
        self.lora_rank, self.adapter_tokens, self.adapter_rank = int(lora_rank), int(adapter_tokens), int(adapter_rank)
        self.architecture = architecture_of(hub)
        self.patch_size, self.hidden_dim = int(hub.patch_size), int(hub.hidden_dim)
        self.num_layers = len(hub.encoder.layers)
        self.num_prefix_tokens = 1 + int(hub.num_register_tokens)
        depth = self.num_layers
        self.feature_layers = (max(1, round(depth / 4)), max(1, round(3 * depth / 4)), depth)
        self.adapter = None
        if tuning == "frozen":
            hub.trainable = False
        elif tuning == "lora":
            hub.enable_lora(self.lora_rank)
            _lora_factors_in_variable_dtype(hub)
        elif tuning == "adapter":
            hub.trainable = False
            self.adapter = TokenAdapter(
                self.num_layers, self.hidden_dim, adapter_tokens, adapter_rank, dtype=self.dtype_policy, name="adapter"
            )
        self.low_level_stride = self.patch_size / 4
        self.aux_stride = self.patch_size * self.output_stride / 16
        self.built = True

    # ------------------------------------------------------------------------------------------- tokens
    def _embed(self, images, training):
        """``(tokens [B, prefix + h*w, C], layer keyword arguments)`` for normalised images."""
        embeddings = self.hub.embeddings
        if self.kind == "DINOV3Backbone":
            tokens = embeddings(images, training=training)
            rope = self.hub.rope_embedding(images)
            return tokens, dict(position_embeddings=rope, num_prefix_tokens=self.num_prefix_tokens)
        batch = tf.shape(images)[0]
        h, w = tf.shape(images)[1] // self.patch_size, tf.shape(images)[2] // self.patch_size
        patches = embeddings.patch_embeddings(images, training=training)
        cls = tf.tile(tf.cast(embeddings.cls_token, patches.dtype), [batch, 1, 1])
        position = tf.cast(embeddings.interpolated_position_embeddings, patches.dtype)
        grid_h, grid_w = (int(s) // self.patch_size for s in self.hub.image_shape[:2])
        patch_position = tf.reshape(position[:, 1:], [1, grid_h, grid_w, self.hidden_dim])
        patch_position = tf.reshape(resize_bilinear(patch_position, (h, w)), [1, -1, self.hidden_dim])
        tokens = tf.concat([cls + position[:, :1], patches + patch_position], axis=1)
        if self.num_prefix_tokens > 1:
            registers = tf.tile(tf.cast(embeddings.register_tokens, tokens.dtype), [batch, 1, 1])
            tokens = tf.concat([tokens[:, :1], registers, tokens[:, 1:]], axis=1)
        return embeddings.dropout(tokens, training=training), {}

    def _grid(self, tokens, shape):
        h, w = shape[1] // self.patch_size, shape[2] // self.patch_size
        return tf.reshape(tokens[:, self.num_prefix_tokens :], [shape[0], h, w, self.hidden_dim])

    def call(self, images, training=None):
        images = tf.cast(images, self.compute_dtype)
        mean = tf.constant(IMAGENET_MEAN, self.compute_dtype)
        std = tf.constant(IMAGENET_STD, self.compute_dtype)
        x = (images / 255.0 - mean) / std
        shape = tf.shape(images)
        tokens, layer_kwargs = self._embed(x, training)
        kept = {}
        for index, layer in enumerate(self.hub.encoder.layers):
            tokens = layer(tokens, training=training, **layer_kwargs)
            if self.adapter is not None:
                refined = self.adapter(tokens[:, self.num_prefix_tokens :], layer_index=index)
                tokens = tf.concat([tokens[:, : self.num_prefix_tokens], refined], axis=1)
            if index + 1 in self.feature_layers:
                kept[index + 1] = tokens
        low, aux, high = self.feature_layers
        high_level = self._grid(self.hub.layernorm(kept[high]), shape)
        aux_level, low_level = self._grid(kept[aux], shape), self._grid(kept[low], shape)
        grid = tf.shape(high_level)[1:3]
        low_level = resize_bilinear(low_level, (4 * grid[0], 4 * grid[1]))
        if self.output_stride == 8:
            high_level = resize_bilinear(high_level, (2 * grid[0], 2 * grid[1]))
            aux_level = resize_bilinear(aux_level, (2 * grid[0], 2 * grid[1]))
        return {"low_level": low_level, "aux": aux_level, "high_level": high_level}

    def compute_output_spec(self, images, training=None):
        batch, height, width = images.shape[0], images.shape[1], images.shape[2]
        h = None if height is None else height // self.patch_size
        w = None if width is None else width // self.patch_size
        up = 16 // self.output_stride

        def spec(scale):
            size = [None if s is None else s * scale for s in (h, w)]
            return keras.KerasTensor((batch, *size, self.hidden_dim), dtype=self.compute_dtype)

        return {"low_level": spec(4), "aux": spec(up), "high_level": spec(up)}

    def get_config(self):
        return {
            **super().get_config(),
            "hub": self.architecture,
            "output_stride": self.output_stride,
            "tuning": self.tuning,
            "lora_rank": self.lora_rank,
            "adapter_tokens": self.adapter_tokens,
            "adapter_rank": self.adapter_rank,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(from_architecture(config.pop("hub"), config.get("dtype")), **config)


def default_meta_order(backbone) -> int:
    """The meta order of ``meta_order=None``: 2 (the paper), or 1 for a keras-hub backbone of more than
    ``SECOND_ORDER_MAX_PARAMS`` parameters."""
    if isinstance(backbone, FoundationBackbone) and backbone.hub.count_params() > SECOND_ORDER_MAX_PARAMS:
        return 1
    return 2


def build_foundation_backbone(
    spec,
    output_stride=16,
    tuning="full",
    lora_rank=8,
    adapter_tokens=100,
    adapter_rank=16,
    architecture=None,
    dtype=None,
):
    """A :class:`FoundationBackbone` from a preset (with its weights) or, given ``architecture`` (from
    :func:`architecture_of`), from that alone with fresh weights (a checkpoint restores them)."""
    hub = from_architecture(architecture, dtype) if architecture is not None else load_preset(spec, dtype)
    return FoundationBackbone(
        hub,
        output_stride=output_stride,
        tuning=tuning,
        lora_rank=lora_rank,
        adapter_tokens=adapter_tokens,
        adapter_rank=adapter_rank,
        dtype=dtype,
        name="backbone",
    )
