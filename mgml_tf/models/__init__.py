"""Backbones, heads and the segmentation model of mgml_tf."""
from mgml_tf.models.backbones import BACKBONES
from mgml_tf.models.backbones import OUTPUT_STRIDES
from mgml_tf.models.backbones import ImagePreprocessing
from mgml_tf.models.backbones import ResNetBackbone
from mgml_tf.models.backbones import build_backbone
from mgml_tf.models.backbones import load_backbone_weights
from mgml_tf.models.backbones import stage_dilations
from mgml_tf.models.backbones import transfer_weights
from mgml_tf.models.heads import ASPP
from mgml_tf.models.heads import AuxiliaryHead
from mgml_tf.models.heads import ConvBNReLU
from mgml_tf.models.heads import DeepLabV2Head
from mgml_tf.models.heads import DeepLabV3PlusDecoder
from mgml_tf.models.heads import FeatureProjection
from mgml_tf.models.heads import resize_bilinear
