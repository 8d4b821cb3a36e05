"""Parameter counts of the segmentation model's parts.

    python -m tools.count_params

Builds ResNet-50 (output stride 16) DeepLabV3+ for 19 classes with and without the memory (the memory,
update network U, read-and-fuse block and memory classifier G) and prints the trainable and non-trainable
(BatchNorm moving statistics, memory) parameter counts of each part, in total, and the memory's share.
``count`` accepts any built layer/model or a list of them.
"""

import argparse
import os

import numpy as np

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


def model_parts(model):
    """The parts of a built ``MemorySegmenter``, as an ordered dict name -> layer (absent parts left out)."""
    parts = {
        f"backbone ({model.model_options['backbone']}, OS{model.backbone.output_stride})": model.backbone,
        "encoder head (ASPP)": model.encoder_head,
        "decoder": model.decoder,
    }
    if model.aux_head is not None:
        parts["auxiliary head (training only)"] = model.aux_head
    if model.use_memory:
        parts["memory M (19 x 256, non-trainable)"] = model.memory_bank
        if model.update_network is not None:
            parts["update network U (training only)"] = model.update_network
        parts["read-and-fuse (eq. 5)"] = model.memory_fuse
        parts["memory classifier G (training only)"] = model.memory_classifier
    return parts


def _report(parts):
    rows = [(name, *count(layer)) for name, layer in parts.items()]
    total = count(list(parts.values()))
    width = max(len(r[0]) for r in rows + [("total",)])
    print(f"| {'part':<{width}} | {'trainable':>12} | {'non-trainable':>13} | {'all':>12} |")
    print(f"|{'-' * (width + 2)}|{'-' * 14}:|{'-' * 15}:|{'-' * 14}:|")
    for name, t, n in rows + [("total", *total)]:
        print(f"| {name:<{width}} | {t:>12,} | {n:>13,} | {t + n:>12,} |")
    return total


def report(num_classes=NUM_CLASSES):
    """Prints the tables and the memory's share; returns ``{use_memory: (whole model, inference graph)}``."""
    import mgml_tf

    totals = {}
    for use_memory in (False, True):
        model = mgml_tf.build_model(
            backbone="resnet50",
            head="deeplabv3plus",
            num_classes=num_classes,
            method="mgml" if use_memory else "baseline",
            compile=False,
        )
        print(f"\nR50 DeepLabV3+ (OS16, {num_classes} classes), {'with' if use_memory else 'without'} memory")
        total = _report(model_parts(model))
        assert sum(total) == model.count_params()
        inference = [layer for name, layer in model_parts(model).items() if "training only" not in name]
        totals[use_memory] = (sum(total), sum(count(inference)))
    for label, i in (("whole model", 0), ("inference (no aux head, U or G)", 1)):
        without, with_memory = totals[False][i], totals[True][i]
        print(
            f"{label}: {without:,} -> {with_memory:,} parameters with memory "
            f"(+{with_memory - without:,}, +{100.0 * (with_memory - without) / without:.2f}%)"
        )
    return totals


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    report()


if __name__ == "__main__":
    main()
