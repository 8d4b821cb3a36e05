"""Dilated ResNet backbones that return stride-4, conv4_x and conv5_x features.

``build_backbone(name, output_stride, weights, ...)`` returns a :class:`ResNetBackbone`, a functional
``keras.Model`` (keras-hub style: the graph is built in ``__init__``, ``get_config`` holds the constructor
arguments) mapping float RGB images in 0..255 of shape ``[B, H, W, 3]`` to the dict
``{"low_level": conv2_x, "aux": conv4_x, "high_level": conv5_x}``.

``resnet50`` and ``resnet101`` have exactly the layers of ``keras.applications.ResNet50/ResNet101`` (v1: the
stride sits on the first 1x1 conv of a block and on its shortcut conv, convs have biases, BN epsilon
1.001e-5, same layer names), with every BatchNormalization a ``MetaBatchNormalization``. Their
preprocessing is the ``keras.applications.resnet`` 'caffe' convention (RGB -> BGR, minus the ImageNet BGR
means). ``resnet_small`` is a small basic-block ResNet (widths 16/32/64/128, one block per stage) for tests
and CPU demos; it scales images to [-1, 1].

Output stride: 32 (no dilation), 16 (conv5_x: stride 1, dilation 2), 8 (conv4_x dilation 2, conv5_x dilation
4). In a dilated stage the stride-2 convs get stride 1 and every 3x3 conv of the stage gets the dilation.
Dilation changes no weight shape, so ImageNet weights load at any output stride.
"""

import os
import warnings

import keras
import numpy as np
from keras import ops

from mgml_tf.config import BACKBONES, OUTPUT_STRIDES
from mgml_tf.layers import Conv2D, MetaBatchNormalization

# Blocks per stage (conv2_x .. conv5_x) and stage widths.
_BOTTLENECK_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
_BOTTLENECK_WIDTHS = (64, 128, 256, 512)  # bottleneck width; the block outputs 4x this
_SMALL_WIDTHS = (16, 32, 64, 128)
_SMALL_STEM = 16

# keras.applications.imagenet_utils 'caffe' mode: BGR channel means of ImageNet, no scaling.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)

_BN_EPSILON = 1.001e-5


def _check_name(name):
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}.")


def _check_output_stride(output_stride):
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(
            f"Unsupported output_stride {output_stride!r}; valid output strides: "
            f"{', '.join(str(s) for s in OUTPUT_STRIDES)}."
        )


def stage_dilations(output_stride):
    """Dilation of conv2_x..conv5_x for an output stride: 32 -> (1,1,1,1), 16 -> (1,1,1,2), 8 -> (1,1,2,4)."""
    _check_output_stride(output_stride)
    return {32: (1, 1, 1, 1), 16: (1, 1, 1, 2), 8: (1, 1, 2, 4)}[output_stride]


@keras.saving.register_keras_serializable(package="mgml_tf")
class ImagePreprocessing(keras.layers.Layer):
    """Maps RGB images in 0..255 to a backbone's input convention.

    ``mode="caffe"``: RGB -> BGR and subtract ``IMAGENET_BGR_MEAN`` (``keras.applications.resnet``).
    ``mode="scale"``: ``x / 127.5 - 1``. The arithmetic runs in the variable dtype (float32, or float64 when
    floatx is float64) so that half-precision policies do not round the mean subtraction; the output is in
    the compute dtype. ``input_channels`` other than 3 (caffe only makes sense for RGB) is allowed for
    ``scale`` only.
    """

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "scale"):
            raise ValueError(f"Unknown preprocessing mode {mode!r}; valid modes: caffe, scale.")
        self.mode = mode
        # No autocast of the input to the compute dtype: `call` casts to the variable dtype itself.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def call(self, images):
        x = ops.cast(ops.convert_to_tensor(images), self.variable_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1) - ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.variable_dtype)
        else:
            x = x / 127.5 - 1.0
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


class _Builder:
    """Creates the layers of one backbone with shared BN and dtype options."""

    def __init__(self, bn_momentum, synchronized_bn, dtype):
        self.bn_momentum = bn_momentum
        self.synchronized_bn = synchronized_bn
        self.dtype = dtype

    def conv(self, x, filters, kernel_size, name, strides=1, dilation=1, padding="valid", use_bias=True):
        return Conv2D(
            filters,
            kernel_size,
            strides=strides,
            dilation_rate=dilation,
            padding=padding,
            use_bias=use_bias,
            name=name,
            dtype=self.dtype,
        )(x)

    def bn(self, x, name):
        return MetaBatchNormalization(
            axis=-1,
            momentum=self.bn_momentum,
            epsilon=_BN_EPSILON,
            synchronized=self.synchronized_bn,
            name=name,
            dtype=self.dtype,
        )(x)

    def relu(self, x, name):
        return keras.layers.Activation("relu", name=name, dtype=self.dtype)(x)

    def add(self, xs, name):
        return keras.layers.Add(name=name, dtype=self.dtype)(xs)

    # keras.applications.resnet v1 bottleneck block (same layer names and creation order).
    def bottleneck_block(self, x, filters, stride, dilation, conv_shortcut, name):
        if conv_shortcut:
            shortcut = self.conv(x, 4 * filters, 1, strides=stride, name=f"{name}_0_conv")
            shortcut = self.bn(shortcut, f"{name}_0_bn")
        else:
            shortcut = x
        x = self.conv(x, filters, 1, strides=stride, name=f"{name}_1_conv")
        x = self.bn(x, f"{name}_1_bn")
        x = self.relu(x, f"{name}_1_relu")
        x = self.conv(x, filters, 3, padding="same", dilation=dilation, name=f"{name}_2_conv")
        x = self.bn(x, f"{name}_2_bn")
        x = self.relu(x, f"{name}_2_relu")
        x = self.conv(x, 4 * filters, 1, name=f"{name}_3_conv")
        x = self.bn(x, f"{name}_3_bn")
        x = self.add([shortcut, x], f"{name}_add")
        return self.relu(x, f"{name}_out")

    def bottleneck_stage(self, x, filters, blocks, stride, dilation, name):
        x = self.bottleneck_block(x, filters, stride, dilation, True, f"{name}_block1")
        for i in range(2, blocks + 1):
            x = self.bottleneck_block(x, filters, 1, dilation, False, f"{name}_block{i}")
        return x

    def bottleneck_stem(self, x):
        x = keras.layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad", dtype=self.dtype)(x)
        x = self.conv(x, 64, 7, strides=2, name="conv1_conv")
        x = self.bn(x, "conv1_bn")
        x = self.relu(x, "conv1_relu")
        x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad", dtype=self.dtype)(x)
        return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool", dtype=self.dtype)(x)

    # Basic block (two 3x3 convs, no conv bias); stride on the first 3x3 conv and on the shortcut.
    def basic_block(self, x, filters, stride, dilation, name):
        in_channels = x.shape[-1]
        if stride != 1 or in_channels != filters:
            shortcut = self.conv(x, filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv")
            shortcut = self.bn(shortcut, f"{name}_0_bn")
        else:
            shortcut = x
        x = self.conv(
            x, filters, 3, strides=stride, dilation=dilation, padding="same", use_bias=False, name=f"{name}_1_conv"
        )
        x = self.bn(x, f"{name}_1_bn")
        x = self.relu(x, f"{name}_1_relu")
        x = self.conv(x, filters, 3, dilation=dilation, padding="same", use_bias=False, name=f"{name}_2_conv")
        x = self.bn(x, f"{name}_2_bn")
        x = self.add([shortcut, x], f"{name}_add")
        return self.relu(x, f"{name}_out")

    def small_stem(self, x):
        x = self.conv(x, _SMALL_STEM, 3, strides=2, padding="same", use_bias=False, name="conv1_conv")
        x = self.bn(x, "conv1_bn")
        x = self.relu(x, "conv1_relu")
        return keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool", dtype=self.dtype)(x)


@keras.saving.register_keras_serializable(package="mgml_tf")
class ResNetBackbone(keras.Model):
    """Dilated ResNet returning ``{"low_level", "aux", "high_level"}`` features (see the module docstring).

    Args:
        backbone_name: one of ``BACKBONES``.
        output_stride: 8, 16 or 32: the stride of ``high_level`` (``aux`` has stride
            ``min(16, output_stride)``, ``low_level`` stride 4).
        bn_momentum: ``momentum`` of every ``MetaBatchNormalization``.
        synchronized_bn: ``synchronized`` of every ``MetaBatchNormalization``.
        input_channels: channels of the input images (3 for the ImageNet ResNets).

    Attributes: ``low_level_channels``, ``aux_channels``, ``high_level_channels``, ``output_stride``,
    ``low_level_stride`` (4), ``aux_stride`` (16 at OS 32 and 16, 8 at OS 8), ``dilations`` (per stage
    conv2_x..conv5_x).
    """

    def __init__(
        self,
        backbone_name="resnet50",
        output_stride=16,
        bn_momentum=0.99,
        synchronized_bn=False,
        input_channels=3,
        dtype=None,
        **kwargs,
    ):
        _check_name(backbone_name)
        _check_output_stride(output_stride)
        input_channels = int(input_channels)
        if backbone_name != "resnet_small" and input_channels != 3:
            raise ValueError(f"{backbone_name} takes RGB images: input_channels must be 3, got {input_channels}.")
        dilations = stage_dilations(output_stride)
        strides = tuple(1 if (i == 0 or dilations[i] > 1) else 2 for i in range(4))
        b = _Builder(bn_momentum, synchronized_bn, dtype)

        images = keras.Input(shape=(None, None, input_channels), name="images")
        mode = "scale" if backbone_name == "resnet_small" else "caffe"
        x = ImagePreprocessing(mode, name="preprocessing", dtype=dtype)(images)
        stage_outputs = []
        if backbone_name == "resnet_small":
            x = b.small_stem(x)
            for i, width in enumerate(_SMALL_WIDTHS):
                x = b.basic_block(x, width, strides[i], dilations[i], name=f"conv{i + 2}_block1")
                stage_outputs.append(x)
        else:
            x = b.bottleneck_stem(x)
            for i, (width, blocks) in enumerate(zip(_BOTTLENECK_WIDTHS, _BOTTLENECK_BLOCKS[backbone_name])):
                x = b.bottleneck_stage(x, width, blocks, strides[i], dilations[i], name=f"conv{i + 2}")
                stage_outputs.append(x)
        outputs = {"low_level": stage_outputs[0], "aux": stage_outputs[2], "high_level": stage_outputs[3]}
        kwargs.setdefault("name", backbone_name)
        super().__init__(inputs=images, outputs=outputs, dtype=dtype, **kwargs)
        # Inputs are checked in `call` with a clear message instead of the functional input spec.
        self.input_spec = None

        self.backbone_name = backbone_name
        self.output_stride = output_stride
        self.bn_momentum = bn_momentum
        self.synchronized_bn = synchronized_bn
        self.input_channels = input_channels
        self.dilations = dilations
        self.low_level_stride = 4
        self.aux_stride = 8 if output_stride == 8 else 16
        self.low_level_channels = int(stage_outputs[0].shape[-1])
        self.aux_channels = int(stage_outputs[2].shape[-1])
        self.high_level_channels = int(stage_outputs[3].shape[-1])

    def __call__(self, inputs, *args, **kwargs):
        # Checked before Keras' call wrapper, so that the error is a plain one-line ValueError.
        self._check_images(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        self._check_images(inputs)  # also reached by `stateless_call`
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def _check_images(self, images):
        if isinstance(images, (dict, list, tuple)):
            raise ValueError(
                f"{self.name} takes one image tensor [batch, height, width, "
                f"{self.input_channels}], got a {type(images).__name__}."
            )
        shape = tuple(getattr(images, "shape", np.shape(images)))
        if len(shape) != 4:
            raise ValueError(
                f"{self.name} takes images of rank 4 [batch, height, width, "
                f"{self.input_channels}], got shape {shape} (rank {len(shape)})."
            )
        if shape[-1] is not None and shape[-1] != self.input_channels:
            raise ValueError(
                f"{self.name} takes images with {self.input_channels} channels "
                f"[batch, height, width, {self.input_channels}], got shape {shape}."
            )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "backbone_name": self.backbone_name,
            "output_stride": self.output_stride,
            "bn_momentum": self.bn_momentum,
            "synchronized_bn": self.synchronized_bn,
            "input_channels": self.input_channels,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


def build_backbone(
    name, output_stride=16, weights=None, bn_momentum=0.99, synchronized_bn=False, input_channels=3, dtype=None
):
    """Builds a :class:`ResNetBackbone` and optionally loads pretrained weights.

    Args:
        name: one of ``BACKBONES``: ``resnet50``, ``resnet101``, ``resnet_small``.
        output_stride: 8, 16 or 32.
        weights: ``None`` (random), ``"imagenet"`` (``keras.applications`` ImageNet weights; downloads on a
            machine with network; resnet50/101 only) or a path: a ``.weights.h5``/``.h5`` file of a
            ``keras.applications.ResNet50/101(include_top=False)``, or a ``.keras`` file of one (or of a
            ``ResNetBackbone`` of the same depth). For ``resnet_small``: a ``.weights.h5`` or ``.keras`` file
            of a ``resnet_small`` backbone.
        bn_momentum, synchronized_bn: passed to every ``MetaBatchNormalization``.
        input_channels: image channels (3 for the ImageNet ResNets).
        dtype: optional dtype policy of every layer (default: the global policy).

    Raises:
        ValueError: unknown name or output stride, or weights that do not fit (naming the first mismatching
            layer).
        FileNotFoundError: ``weights`` is a path that does not exist.
    """
    _check_name(name)
    _check_output_stride(output_stride)
    backbone = ResNetBackbone(
        name,
        output_stride=output_stride,
        bn_momentum=bn_momentum,
        synchronized_bn=synchronized_bn,
        input_channels=input_channels,
        dtype=dtype,
    )
    if weights is not None:
        load_backbone_weights(backbone, weights)
    return backbone


def _application_class(name):
    return {"resnet50": keras.applications.ResNet50, "resnet101": keras.applications.ResNet101}[name]


def load_backbone_weights(backbone, weights):
    """Loads ``weights`` (``"imagenet"`` or a path, see :func:`build_backbone`) into ``backbone`` in place."""
    name = backbone.backbone_name
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise ValueError(f"weights must be None, 'imagenet' or a file path, got {weights!r}.")
    if weights == "imagenet":
        if name not in _BOTTLENECK_BLOCKS:
            raise ValueError(f"There are no ImageNet weights for {name!r}; they exist for resnet50, resnet101.")
        try:
            source = _application_class(name)(include_top=False, weights="imagenet")
        except Exception as e:  # typically no network
            raise OSError(
                f"Could not get the keras.applications ImageNet weights of {name} ({e}). Without "
                f"network, save `keras.applications.{_application_class(name).__name__}(include_top="
                f"False, weights='imagenet')` on a machine that has it and pass weights=PATH."
            ) from e
        transfer_weights(source, backbone)
        return backbone
    if not os.path.exists(weights):
        raise FileNotFoundError(f"Backbone weights file not found: {weights}")
    if weights.endswith(".keras"):
        try:
            source = keras.saving.load_model(weights, compile=False)
        except Exception as e:  # reported as a misfit with the cause attached
            raise ValueError(f"Could not load the model in {weights}: {e}") from e
    elif weights.endswith(".h5"):
        if name in _BOTTLENECK_BLOCKS:
            source = _application_class(name)(include_top=False, weights=None)
            target_description = f"keras.applications.{source.name} (include_top=False)"
        else:
            source = ResNetBackbone(name, input_channels=backbone.input_channels)
            target_description = f"a {name} ResNetBackbone"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Keras warns per skipped layer before it raises
                source.load_weights(weights)
        except Exception as e:
            detail = " ".join(line.strip() for line in str(e).strip().splitlines()[:4] if line.strip())
            raise ValueError(f"The weights in {weights} do not fit {target_description}: {detail}") from e
    else:
        raise ValueError(f"Unsupported weights file {weights!r}: expected .weights.h5, .h5 or .keras.")
    transfer_weights(source, backbone)
    return backbone


def _weighted_layers(model):
    """Layers that own variables, in the functional model's structural (topological) order."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a wrapped backbone: walk into it
            layers.extend(_weighted_layers(layer))
        elif layer.weights:
            layers.append(layer)
    return layers


def _kind(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        return "BatchNormalization"
    return type(layer).__name__


def transfer_weights(source, target):
    """Copies every variable of ``source`` into ``target``, layer by layer in structural order.

    The two models must have the same sequence of weighted layers (same kind, same variable shapes); any
    difference raises ``ValueError`` naming the first mismatching layer. Only ``target`` is modified, and
    only once everything has been checked.
    """
    src_layers = _weighted_layers(source)
    dst_layers = _weighted_layers(target)
    pairs = []
    for i in range(max(len(src_layers), len(dst_layers))):
        if i >= len(src_layers):
            raise ValueError(
                f"Weights do not fit: layer {dst_layers[i].name!r} of {target.name} has no "
                f"counterpart in {source.name} ({len(src_layers)} weighted layers against "
                f"{len(dst_layers)})."
            )
        if i >= len(dst_layers):
            raise ValueError(
                f"Weights do not fit: layer {src_layers[i].name!r} of {source.name} has no "
                f"counterpart in {target.name} ({len(src_layers)} weighted layers against "
                f"{len(dst_layers)})."
            )
        src, dst = src_layers[i], dst_layers[i]
        src_shapes = [tuple(v.shape) for v in src.weights]
        dst_shapes = [tuple(v.shape) for v in dst.weights]
        if _kind(src) != _kind(dst) or src_shapes != dst_shapes:
            raise ValueError(
                f"Weights do not fit at layer {dst.name!r} of {target.name} (weighted layer "
                f"{i}): it is a {_kind(dst)} with variable shapes {dst_shapes}, the source layer "
                f"{src.name!r} is a {_kind(src)} with {src_shapes}."
            )
        pairs.append((src, dst))
    for src, dst in pairs:
        for s, d in zip(src.weights, dst.weights):
            d.assign(ops.cast(ops.convert_to_tensor(s), d.dtype))
    return target
