from mgml_tf.models.backbones import BACKBONES, OUTPUT_STRIDES, ImagePreprocessing, ResNetBackbone, build_backbone, load_backbone_weights, stage_dilations, transfer_weights
