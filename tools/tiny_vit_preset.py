"""A randomly initialised tiny keras-hub ViT saved as a local preset directory (no download, no network).

    python -m tools.tiny_vit_preset --output=/tmp/mgml_tf_tiny_vit [--family=dinov2|dinov3] [--registers=0]

What ``configs/dinov2_tiny.cfg`` trains on, and what the tests load with ``--backbone=PATH``: the same
directory layout ``Backbone.save_to_preset`` writes for real presets (config.json, metadata.json,
model.weights.h5), so the loading path is the real one. Width 16, 2 heads, patch 8: a few thousand parameters.
"""

import argparse


def tiny_vit_preset(path, family="dinov2", registers=0, num_layers=4, patch_size=8, image_size=32, seed=0):
    """Saves a random DINOv2 or DINOv3 (``num_layers`` layers, width 16, 2 heads) as a preset at ``path``;
    returns the path."""
    import keras
    from keras_hub.models import DINOV2Backbone, DINOV3Backbone

    keras.utils.set_random_seed(seed)
    common = dict(patch_size=patch_size, num_layers=num_layers, hidden_dim=16, num_heads=2, intermediate_dim=32)
    shape = (image_size, image_size, 3)
    if family == "dinov2":
        hub = DINOV2Backbone(
            **common, num_register_tokens=registers, image_shape=shape, position_embedding_shape=(48, 48, 3)
        )
    elif family == "dinov3":
        hub = DINOV3Backbone(**common, num_register_tokens=registers, image_shape=shape)
    else:
        raise ValueError(f"unknown family {family!r}; choose dinov2 or dinov3")
    hub.save_to_preset(str(path))
    return str(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="preset directory to write")
    parser.add_argument("--family", default="dinov2", choices=("dinov2", "dinov3"))
    parser.add_argument("--registers", type=int, default=0, help="register tokens")
    args = parser.parse_args(argv)
    print(tiny_vit_preset(args.output, args.family, args.registers))


if __name__ == "__main__":
    main()
