"""Segmentation heads: ASPP, the DeepLabV3+ decoder, the DeepLabV2 projection and classifier, the FCN aux head.

Every BatchNormalization is a ``MetaBatchNormalization`` (``bn_momentum``/``bn_epsilon``/``synchronized_bn``
options). ``bn_epsilon`` defaults to PyTorch's 1e-5, as in the reference code; a layer config saved before the
option existed has no ``bn_epsilon`` key and keeps meaning Keras's 1e-3 (``from_config``, docs/REFERENCE.md).
Dropout is the only randomness: with ``dropout=0`` (or ``training=False``) every layer is deterministic.
Outputs are in the layer's compute dtype. Everything is twice differentiable, including the bilinear
upsampling (``mgml_tf.ops.resize_bilinear``: ``tf.image.resize`` silently drops the second derivative).
"""

import keras
from keras import ops

from mgml_tf.layers import Conv2D, MetaBatchNormalization
from mgml_tf.layers.normalization import BN_EPSILON, LegacyBNEpsilon
from mgml_tf.ops import resize_bilinear


# ---------------------------------------------------------------------------------------------- blocks
@keras.saving.register_keras_serializable(package="mgml_tf")
class ConvBNReLU(LegacyBNEpsilon, keras.layers.Layer):
    """Conv2D (no bias, "same" padding, optional dilation) -> MetaBatchNormalization -> ReLU."""

    def __init__(
        self,
        filters,
        kernel_size,
        dilation_rate=1,
        bn_momentum=0.99,
        synchronized_bn=False,
        bn_epsilon=BN_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.dilation_rate = int(dilation_rate)
        self.bn_momentum = bn_momentum
        self.synchronized_bn = synchronized_bn
        self.bn_epsilon = float(bn_epsilon)
        self.conv = Conv2D(
            self.filters,
            self.kernel_size,
            padding="same",
            dilation_rate=self.dilation_rate,
            use_bias=False,
            dtype=self.dtype_policy,
            name="conv",
        )
        self.bn = MetaBatchNormalization(
            momentum=bn_momentum,
            epsilon=self.bn_epsilon,
            synchronized=synchronized_bn,
            dtype=self.dtype_policy,
            name="bn",
        )

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.compute_output_shape(input_shape))
        self.built = True

    def call(self, inputs, training=None):
        return ops.relu(self.bn(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            dilation_rate=self.dilation_rate,
            bn_momentum=self.bn_momentum,
            synchronized_bn=self.synchronized_bn,
            bn_epsilon=self.bn_epsilon,
        )
        return config


def _block_options(self):
    return dict(
        bn_momentum=self.bn_momentum,
        synchronized_bn=self.synchronized_bn,
        bn_epsilon=self.bn_epsilon,
        dtype=self.dtype_policy,
    )


def _check_rank4(layer, shape, what="features"):
    if len(shape) != 4:
        raise ValueError(
            f"{layer.name} takes {what} of rank 4 [batch, height, width, channels], got shape {tuple(shape)}."
        )


@keras.saving.register_keras_serializable(package="mgml_tf")
class ASPP(LegacyBNEpsilon, keras.layers.Layer):
    """Atrous spatial pyramid pooling (DeepLabV3): the encoder head producing F.

    Branches (all conv-BN-ReLU, no conv bias): 1x1; one 3x3 per rate with that dilation; image pooling
    (global mean, 1x1, broadcast back). Concatenated, projected by 1x1 conv-BN-ReLU to ``filters``, then
    dropout. ``rates`` are used as given (6, 12, 18 is the output-stride-16 setting; double them at 8).
    """

    def __init__(
        self,
        filters=256,
        rates=(6, 12, 18),
        bn_momentum=0.99,
        synchronized_bn=False,
        dropout=0.1,
        bn_epsilon=BN_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.rates = tuple(int(r) for r in rates)
        self.bn_momentum = bn_momentum
        self.synchronized_bn = synchronized_bn
        self.bn_epsilon = float(bn_epsilon)
        self.dropout_rate = float(dropout)
        self.branch_1x1 = ConvBNReLU(self.filters, 1, name="aspp0", **_block_options(self))
        self.branches = [
            ConvBNReLU(self.filters, 3, dilation_rate=r, name=f"aspp{i + 1}", **_block_options(self))
            for i, r in enumerate(self.rates)
        ]
        self.pool_branch = ConvBNReLU(self.filters, 1, name="aspp_pool", **_block_options(self))
        self.projection = ConvBNReLU(self.filters, 1, name="aspp_projection", **_block_options(self))
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy, name="aspp_dropout")

    def build(self, input_shape):
        _check_rank4(self, input_shape)
        self.branch_1x1.build(input_shape)
        for branch in self.branches:
            branch.build(input_shape)
        self.pool_branch.build((input_shape[0], 1, 1, input_shape[-1]))
        self.projection.build(tuple(input_shape[:-1]) + (self.filters * (len(self.rates) + 2),))
        self.built = True

    def call(self, inputs, training=None):
        outputs = [self.branch_1x1(inputs, training=training)]
        outputs += [branch(inputs, training=training) for branch in self.branches]
        pooled = self.pool_branch(ops.mean(inputs, axis=(1, 2), keepdims=True), training=training)
        shape = ops.shape(outputs[0])
        outputs.append(ops.broadcast_to(pooled, shape))
        x = ops.concatenate(outputs, axis=-1)
        x = self.projection(x, training=training)
        return self.dropout(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            rates=list(self.rates),
            bn_momentum=self.bn_momentum,
            synchronized_bn=self.synchronized_bn,
            dropout=self.dropout_rate,
            bn_epsilon=self.bn_epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package="mgml_tf")
class DeepLabV3PlusDecoder(LegacyBNEpsilon, keras.layers.Layer):
    """DeepLabV3+ decoder: ``call(features, low_level) -> logits`` at the low-level (stride-4) resolution.

    ``low_level`` -> 1x1 conv-BN-ReLU to ``low_level_filters``; ``features`` upsampled bilinearly
    (:func:`resize_bilinear`, half-pixel centres) to the low-level size; concatenated; two 3x3 conv-BN-ReLU
    with ``filters``; 1x1 classifier with bias to ``num_classes`` logits.
    """

    def __init__(
        self,
        num_classes,
        filters=256,
        low_level_filters=48,
        bn_momentum=0.99,
        synchronized_bn=False,
        bn_epsilon=BN_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.filters = int(filters)
        self.low_level_filters = int(low_level_filters)
        self.bn_momentum = bn_momentum
        self.synchronized_bn = synchronized_bn
        self.bn_epsilon = float(bn_epsilon)
        self.low_level_projection = ConvBNReLU(self.low_level_filters, 1, name="low_level", **_block_options(self))
        self.fuse1 = ConvBNReLU(self.filters, 3, name="fuse1", **_block_options(self))
        self.fuse2 = ConvBNReLU(self.filters, 3, name="fuse2", **_block_options(self))
        self.classifier = keras.layers.Conv2D(self.num_classes, 1, dtype=self.dtype_policy, name="classifier")

    def build(self, features_shape, low_level_shape):
        _check_rank4(self, features_shape)
        _check_rank4(self, low_level_shape, "low_level features")
        self.low_level_projection.build(low_level_shape)
        low = self.low_level_projection.compute_output_shape(low_level_shape)
        fused = tuple(low[:-1]) + (self.low_level_filters + features_shape[-1],)
        self.fuse1.build(fused)
        self.fuse2.build(self.fuse1.compute_output_shape(fused))
        self.classifier.build(tuple(low[:-1]) + (self.filters,))
        self.built = True

    def call(self, features, low_level, training=None):
        low = self.low_level_projection(low_level, training=training)
        size = ops.shape(low)[1:3]
        up = resize_bilinear(features, size)
        x = ops.concatenate([up, low], axis=-1)
        x = self.fuse2(self.fuse1(x, training=training), training=training)
        return self.classifier(x)

    def compute_output_shape(self, features_shape, low_level_shape):
        return tuple(low_level_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            filters=self.filters,
            low_level_filters=self.low_level_filters,
            bn_momentum=self.bn_momentum,
            synchronized_bn=self.synchronized_bn,
            bn_epsilon=self.bn_epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package="mgml_tf")
class FeatureProjection(LegacyBNEpsilon, keras.layers.Layer):
    """1x1 conv-BN-ReLU to ``filters``: the DeepLabV2 encoder's F from conv5_x."""

    def __init__(self, filters=256, bn_momentum=0.99, synchronized_bn=False, bn_epsilon=BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.bn_momentum = bn_momentum
        self.synchronized_bn = synchronized_bn
        self.bn_epsilon = float(bn_epsilon)
        self.block = ConvBNReLU(self.filters, 1, name="projection", **_block_options(self))

    def build(self, input_shape):
        _check_rank4(self, input_shape)
        self.block.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        return self.block(inputs, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            bn_momentum=self.bn_momentum,
            synchronized_bn=self.synchronized_bn,
            bn_epsilon=self.bn_epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package="mgml_tf")
class DeepLabV2Head(keras.layers.Layer):
    """DeepLabV2's ASPP classifier: the sum of 3x3 convs (with bias) to ``num_classes``, one per rate."""

    def __init__(self, num_classes, rates=(6, 12, 18, 24), **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.rates = tuple(int(r) for r in rates)
        self.convs = [
            Conv2D(
                self.num_classes,
                3,
                padding="same",
                dilation_rate=r,
                dtype=self.dtype_policy,
                name=f"classifier_rate{r}",
            )
            for r in self.rates
        ]

    def build(self, input_shape):
        _check_rank4(self, input_shape)
        for conv in self.convs:
            conv.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        out = self.convs[0](inputs)
        for conv in self.convs[1:]:
            out = out + conv(inputs)
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, rates=list(self.rates))
        return config


@keras.saving.register_keras_serializable(package="mgml_tf")
class AuxiliaryHead(LegacyBNEpsilon, keras.layers.Layer):
    """FCN auxiliary head on conv4_x: 3x3 conv-BN-ReLU to ``filters``, dropout, 1x1 classifier with bias."""

    def __init__(
        self,
        num_classes,
        filters=256,
        dropout=0.1,
        bn_momentum=0.99,
        synchronized_bn=False,
        bn_epsilon=BN_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.filters = int(filters)
        self.dropout_rate = float(dropout)
        self.bn_momentum = bn_momentum
        self.synchronized_bn = synchronized_bn
        self.bn_epsilon = float(bn_epsilon)
        self.block = ConvBNReLU(self.filters, 3, name="aux", **_block_options(self))
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy, name="aux_dropout")
        self.classifier = keras.layers.Conv2D(self.num_classes, 1, dtype=self.dtype_policy, name="classifier")

    def build(self, input_shape):
        _check_rank4(self, input_shape)
        self.block.build(input_shape)
        self.classifier.build(tuple(input_shape[:-1]) + (self.filters,))
        self.built = True

    def call(self, inputs, training=None):
        x = self.dropout(self.block(inputs, training=training), training=training)
        return self.classifier(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            filters=self.filters,
            dropout=self.dropout_rate,
            bn_momentum=self.bn_momentum,
            synchronized_bn=self.synchronized_bn,
            bn_epsilon=self.bn_epsilon,
        )
        return config
