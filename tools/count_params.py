"""Parameter counts of the segmentation model's parts.

    python tools/count_params.py

Builds ResNet-50 (output stride 16) + ASPP + DeepLabV3+ decoder + auxiliary head for 19 classes and prints
the trainable and non-trainable (BatchNorm moving statistics) parameter counts of each part and in total.
``count`` accepts any built layer/model or a list of them, so that further parts can be added.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

NUM_CLASSES = 19


def count(model_or_layers):
    """``(trainable, non_trainable)`` parameter counts of a built layer/model or a list of them.

    Variables shared between the given layers are counted once.
    """
    layers = model_or_layers if isinstance(model_or_layers, (list, tuple)) else [model_or_layers]
    seen, trainable, non_trainable = set(), 0, 0
    for layer in layers:
        if not layer.built:
            raise ValueError(f"{layer.name} is not built: build it (or call it once) before counting.")
        for variables, is_trainable in ((layer.trainable_weights, True), (layer.non_trainable_weights, False)):
            for v in variables:
                if id(v) in seen:
                    continue
                seen.add(id(v))
                n = int(np.prod(v.shape))
                if is_trainable:
                    trainable += n
                else:
                    non_trainable += n
    return trainable, non_trainable


def build_parts(num_classes=NUM_CLASSES, backbone="resnet50", output_stride=16):
    """The DeepLabV3+ parts (built from shapes), as an ordered dict name -> layer."""
    from mgml_tf.models import ASPP, AuxiliaryHead, DeepLabV3PlusDecoder, build_backbone

    net = build_backbone(backbone, output_stride=output_stride)
    aspp = ASPP(filters=256, rates=tuple(r * max(1, 16 // output_stride) for r in (6, 12, 18)), name="aspp")
    decoder = DeepLabV3PlusDecoder(num_classes, filters=256, low_level_filters=48, name="decoder")
    aux = AuxiliaryHead(num_classes, filters=256, name="aux_head")
    aspp.build((None, None, None, net.high_level_channels))
    decoder.build((None, None, None, aspp.filters), (None, None, None, net.low_level_channels))
    aux.build((None, None, None, net.aux_channels))
    return {f"backbone ({backbone}, OS{output_stride})": net, "ASPP": aspp, "DeepLabV3+ decoder": decoder,
            "auxiliary head": aux}


def _report(parts):
    rows = [(name, *count(layer)) for name, layer in parts.items()]
    total = count(list(parts.values()))
    width = max(len(r[0]) for r in rows + [("total",)])
    print(f"{'part':<{width}}  {'trainable':>12}  {'non-trainable':>13}  {'all':>12}")
    for name, t, n in rows + [("total", *total)]:
        print(f"{name:<{width}}  {t:>12,}  {n:>13,}  {t + n:>12,}")
    return total


def main():
    parts = build_parts()
    print(f"DeepLabV3+ for {NUM_CLASSES} classes")
    total = _report(parts)
    without_aux = count([layer for name, layer in parts.items() if name != "auxiliary head"])
    print(f"without the auxiliary head: {without_aux[0]:,} trainable, {sum(without_aux):,} in all")
    return total


if __name__ == "__main__":
    main()
