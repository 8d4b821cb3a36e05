"""``python -m mgml_tf.export --model_dir=DIR --export_dir=DIR``: a SavedModel for serving.

Signatures (any batch and image size >= 1; uint8 only: another dtype is refused by the signature, another
rank or channel count, or an empty batch or image, by a check that runs before the network):

* ``serving_default(images: uint8 [B, H, W, 3])`` -> ``labels`` (uint8 [B, H, W], train ids) and
  ``probabilities`` (float32 [B, H, W, N]);
* ``memory_weights(images: uint8 [B, H, W, 3])`` -> ``memory_weights`` (float32 [B, H, W, N]: the read
  weights of eq. 4 at image resolution, the paper's Fig. 6/8 activation maps) and ``labels`` (models with a
  memory only).

The loaded object also has ``class_names`` (string [N]), ``palette`` (uint8 [N, 3]) and ``num_classes``;
``assets.extra/mgml_tf.json`` holds the same plus the training configuration. Loading needs TensorFlow only
(``tf.saved_model.load``), not mgml_tf or Keras. The export runs outside any distribution strategy.
"""

import json
import os
import shutil
import sys

from mgml_tf.training import cli

PROG = "mgml_tf.export"
METADATA = os.path.join("assets.extra", "mgml_tf.json")


def make_flags():
    from absl import flags

    fv = flags.FlagValues()
    flags.DEFINE_string("model_dir", None, "Run directory written by mgml_tf.train.", flag_values=fv)
    flags.DEFINE_string(
        "export_dir", None, "Output SavedModel folder (must not exist, or use --overwrite).", flag_values=fv
    )
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --export_dir.", flag_values=fv)
    return fv


def serving_module(model):
    """A ``tf.Module`` whose tf.functions run ``model`` in inference mode on uint8 images."""
    import tensorflow as tf

    from mgml_tf import visualize as vis
    from mgml_tf.data.labels import CLASS_NAMES, TRAIN_ID_COLORS

    n = int(model.num_classes)
    names = list(CLASS_NAMES) if n == len(CLASS_NAMES) else [f"class_{i}" for i in range(n)]
    spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    label_dtype = tf.uint8 if n <= 256 else tf.int32

    module = tf.Module(name="mgml_tf_segmenter")
    module.model_variables = list(model.variables)  # tracked: the SavedModel stores their values
    module.class_names = tf.Variable(names, trainable=False, name="class_names")
    module.palette = tf.Variable(
        vis.colorize(range(n), n) if n != 19 else TRAIN_ID_COLORS, trainable=False, name="palette"
    )
    module.num_classes = tf.Variable(n, trainable=False, name="num_classes")

    def checked(images):
        # A signature call does not enforce the spec's rank and channel count, and inside the traced graph
        # the static spec [?, ?, ?, 3] lets rank/shape checks be constant-folded away: a rank-3 input would
        # then fail deep inside the network with an unrelated message (or worse). The image is therefore
        # passed through serialize/parse, which forgets the static shape, and checked on its real shape.
        real = tf.io.parse_tensor(tf.io.serialize_tensor(images), tf.uint8)
        shape = tf.shape(real)
        rank_ok = tf.equal(tf.size(shape), 4)
        padded = tf.concat([shape, tf.zeros([4], tf.int32)], 0)  # indexable whatever the rank
        ok = rank_ok & tf.equal(padded[3], 3) & tf.reduce_all(padded[:3] >= 1)
        check = tf.debugging.Assert(
            ok,
            [
                "mgml_tf serving: images must be uint8 [batch, height, width, 3] (RGB) with batch, height and "
                "width >= 1; got shape",
                shape,
            ],
            summarize=8,
        )
        with tf.control_dependencies([check]):
            real = tf.ensure_shape(tf.identity(real), [None, None, None, 3])
        return tf.cast(real, tf.float32)

    @tf.function(input_signature=[spec])
    def serve(images):
        images = checked(images)
        probabilities = tf.nn.softmax(model(images, training=False), axis=-1)
        labels = tf.cast(tf.argmax(probabilities, axis=-1), label_dtype)
        return {"labels": labels, "probabilities": probabilities}

    module.serve = serve
    signatures = {"serving_default": serve}
    if model.use_memory:

        @tf.function(input_signature=[spec])
        def memory_weights(images):
            probabilities, weights = model.predict_with_weights(checked(images))
            return {"memory_weights": weights, "labels": tf.cast(tf.argmax(probabilities, axis=-1), label_dtype)}

        module.memory_weights = memory_weights
        signatures["memory_weights"] = memory_weights
    return (
        module,
        signatures,
        {
            "class_names": names,
            "palette": module.palette.numpy().tolist(),
            "num_classes": n,
            "memory": bool(model.use_memory),
        },
    )


def export(model, export_dir, config=None, step=None):
    """Writes the SavedModel into ``export_dir`` (via a temporary sibling folder renamed into place)."""
    import tensorflow as tf

    module, signatures, meta = serving_module(model)
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.abspath(export_dir) + f".partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, tmp, signatures=signatures)
        meta = {**meta, "step": step, "signatures": sorted(signatures), "config": config}
        cli.atomic_write_text(os.path.join(tmp, METADATA), json.dumps(meta, indent=1) + "\n")
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.rename(tmp, export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def main(argv):
    cli.quiet_import()
    fv = make_flags()
    cli.parse_flags(fv, argv, PROG)
    for name in ("model_dir", "export_dir"):
        if not fv[name].value:
            raise cli.UsageError(f"--{name} is required")
    if not os.path.isdir(fv.model_dir):
        raise cli.UsageError(f"--model_dir={fv.model_dir} not found")
    if os.path.exists(fv.export_dir) and not fv.overwrite:
        raise cli.UsageError(f"--export_dir={fv.export_dir} exists; remove it or pass --overwrite")
    cli.check_writable("export_dir", fv.export_dir)

    import numpy as np
    import tensorflow as tf

    from mgml_tf.training import model_dir as md

    model, config, path = md.build_from_dir(fv.model_dir)
    step = int(model.optimizer.iterations.numpy())
    export(model, fv.export_dir, config=config, step=step)
    # Self-check: the reloaded SavedModel agrees with the Keras model on a test image.
    loaded = tf.saved_model.load(fv.export_dir)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(1, 67, 91, 3), dtype=np.uint8)
    got = loaded.signatures["serving_default"](images=tf.constant(image))["probabilities"].numpy()
    want = tf.nn.softmax(model(tf.constant(image, tf.float32), training=False), axis=-1).numpy()
    err = float(np.max(np.abs(got - want)))
    if not err < 1e-4:
        raise cli.RunError(f"the exported model disagrees with the Keras model (max |dp| = {err:.2e})")
    print(
        f"exported {path} (step {step}) to {fv.export_dir}; signatures: "
        f"{', '.join(sorted(loaded.signatures))}; max |probability difference| vs Keras {err:.1e}"
    )
    return 0


if __name__ == "__main__":
    cli.run(PROG, main, sys.argv)
