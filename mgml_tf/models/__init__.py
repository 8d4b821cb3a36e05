"""Backbones, heads and the segmentation model of mgml_tf."""

from mgml_tf.models.backbones import (
    BACKBONES,
    OUTPUT_STRIDES,
    ImagePreprocessing,
    ResNetBackbone,
    build_backbone,
    load_backbone_weights,
    stage_dilations,
    transfer_weights,
)
from mgml_tf.models.heads import (
    ASPP,
    AuxiliaryHead,
    ConvBNReLU,
    DeepLabV2Head,
    DeepLabV3PlusDecoder,
    FeatureProjection,
    resize_bilinear,
)

__all__ = [
    "ASPP",
    "BACKBONES",
    "OUTPUT_STRIDES",
    "AuxiliaryHead",
    "ConvBNReLU",
    "DeepLabV2Head",
    "DeepLabV3PlusDecoder",
    "FeatureProjection",
    "ImagePreprocessing",
    "ResNetBackbone",
    "build_backbone",
    "load_backbone_weights",
    "resize_bilinear",
    "stage_dilations",
    "transfer_weights",
]
