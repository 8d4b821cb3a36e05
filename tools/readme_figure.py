"""Renders docs/predictions.png: target-domain images, the model's prediction, the ground truth, and the
memory activation map of one class (Fig. 6 of the paper; min-max scaled per image), one row per target domain.

    python -m tools.readme_figure --model_dir=/tmp/mgml_demo --index=3 --output=docs/predictions.png

Uses the targets recorded in the run's flags.json and the model restored by mgml_tf.predict's loader.
"""

import json
import os

import numpy as np
from absl import app, flags


def render_figure(model_dir, index=3, memory_class="road", output="docs/predictions.png"):
    """Writes the figure of ``model_dir``'s run to ``output``: the ``index``-th validation image of each
    target, with the memory weights of ``memory_class``."""
    import tensorflow as tf

    from mgml_tf.data import load_domain
    from mgml_tf.data.labels import CLASS_NAMES, colorize
    from mgml_tf.training import model_dir as md

    with open(os.path.join(model_dir, "flags.json")) as f:
        saved = json.load(f)
    model = md.build_from_dir(model_dir)[0]
    rows = []
    for spec in saved["resolved"]["targets"]:
        name, root = spec.split(":", 1)
        domain = load_domain(name, root, split="val")
        image, label = domain.read(*domain.pairs[index])
        image = image.numpy()
        probabilities, weights = model.predict_with_weights(image[None].astype(np.float32))
        prediction = np.argmax(probabilities.numpy()[0], -1)
        heat = weights.numpy()[0, ..., CLASS_NAMES.index(memory_class)]
        print(f"{name}: memory weight of '{memory_class}' ranges {heat.min():.4f}..{heat.max():.4f}")
        heat = (heat - heat.min()) / max(heat.max() - heat.min(), 1e-9)  # min-max: the contrast, not the level
        heat_rgb = np.stack([255 * heat, 255 * heat**2, 64 * (1 - heat)], -1)
        panel = [image, colorize(prediction), colorize(label.numpy()), 0.4 * image + 0.6 * heat_rgb]
        rows.append(np.concatenate([np.asarray(p, np.float32) for p in panel], axis=1))
    figure = np.clip(np.concatenate(rows, axis=0), 0, 255).astype(np.uint8)
    tf.io.write_file(output, tf.io.encode_png(figure))
    row_names = [t.split(":")[0] for t in saved["resolved"]["targets"]]
    print(
        f"wrote {output} ({figure.shape[1]}x{figure.shape[0]}): rows {row_names}; "
        f"columns: image, prediction, ground truth, memory weights of '{memory_class}'"
    )


# ---------------------------------------------------------------------------------------- command line
def _define_flags():
    flags.DEFINE_string("model_dir", None, "A trained run's model_dir.", required=True)
    flags.DEFINE_integer("index", 3, "Which validation image of each target.")
    flags.DEFINE_string("memory_class", "road", "Class whose memory activation map is shown.")
    flags.DEFINE_string("output", "docs/predictions.png", "Output PNG.")


def _main(argv):
    del argv
    FLAGS = flags.FLAGS
    render_figure(FLAGS.model_dir, FLAGS.index, FLAGS.memory_class, FLAGS.output)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _define_flags()
    app.run(_main, argv)


if __name__ == "__main__":
    main()
