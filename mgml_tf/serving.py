"""Serving: the SavedModel that ``python -m mgml_tf.export`` writes and the one inference interface that
``python -m mgml_tf.predict`` runs, over a SavedModel or a model_dir.

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

* ``serving_module(model)``: the ``tf.Module``, its signatures and its metadata;
* ``export(model, export_dir)``: the SavedModel on disk; ``export_difference``: how far it is from the model;
* ``ServedModel`` (``load(export_dir=...)``, ``load(preset=...)`` or ``load(model_dir=...)``): labels and memory
  weights of an image through the same signatures, from any of the three kinds of folder.
"""

import json
import os
import shutil

import numpy as np
import tensorflow as tf

from mgml_tf import visualize as vis
from mgml_tf.data.labels import CLASS_NAMES, TRAIN_ID_COLORS
from mgml_tf.errors import RunError, one_line
from mgml_tf.files import atomic_write_text, is_no_space

METADATA = os.path.join("assets.extra", "mgml_tf.json")


def serving_module(model):
    """A ``tf.Module`` whose tf.functions run ``model`` in inference mode on uint8 images."""
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
    module, signatures, meta = serving_module(model)
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.abspath(export_dir) + f".partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, tmp, signatures=signatures)
        meta = {**meta, "step": step, "signatures": sorted(signatures), "config": config}
        atomic_write_text(os.path.join(tmp, METADATA), json.dumps(meta, indent=1) + "\n")
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.rename(tmp, export_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_no_space(e):
            kept = " and the previous one kept" if os.path.exists(export_dir) else ""
            raise RunError(
                f"no space left on device while exporting to {export_dir}: the partial export is removed{kept}; "
                "free some space and export again"
            ) from None
        raise
    return meta


def export_difference(model, export_dir):
    """``(max |probability difference|, signature names)`` of the SavedModel in ``export_dir`` reloaded with
    ``tf.saved_model.load`` against the Keras ``model``, on one random uint8 image (seed 0, 67x91)."""
    loaded = tf.saved_model.load(export_dir)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(1, 67, 91, 3), dtype=np.uint8)
    got = loaded.signatures["serving_default"](images=tf.constant(image))["probabilities"].numpy()
    want = tf.nn.softmax(model(tf.constant(image, tf.float32), training=False), axis=-1).numpy()
    return float(np.max(np.abs(got - want))), sorted(loaded.signatures)


def served_version(export_dir):
    """``export_dir`` if it holds a SavedModel, else its highest numbered subfolder that does (the version TF
    Serving serves from a base folder), else ``export_dir``."""
    if tf.saved_model.contains_saved_model(export_dir) or not os.path.isdir(export_dir):
        return export_dir
    versions = [
        int(name)
        for name in os.listdir(export_dir)
        if name.isdigit() and tf.saved_model.contains_saved_model(os.path.join(export_dir, name))
    ]
    return os.path.join(export_dir, str(max(versions))) if versions else export_dir


class ServedModel:
    """Uniform access to a SavedModel or a model_dir: ``run(uint8 [H,W,3]) -> (labels, weights|None)``.

    Both go through the signatures of ``serving_module`` (loaded, or built from the newest checkpoint);
    ``class_names``, ``palette`` (uint8 [N, 3]) and ``source`` (the folder or checkpoint read) describe it.
    """

    def __init__(self, class_names, palette, serve, memory_weights, source, owner):
        self.class_names = class_names
        self.palette = palette
        self._serve = serve
        self._memory = memory_weights
        self.source = source
        self._owner = owner  # the loaded SavedModel or the module: keeps the functions' variables alive

    @classmethod
    def from_export_dir(cls, export_dir):
        """The SavedModel in ``export_dir``, or in its highest numbered version folder (TF Serving's layout)."""
        export_dir = served_version(export_dir)
        if not tf.saved_model.contains_saved_model(export_dir):
            raise RunError(
                f"--export_dir={export_dir} holds no SavedModel (no saved_model.pb); write one with mgml_tf.export"
            )
        try:
            loaded = tf.saved_model.load(export_dir)
            class_names = [n.decode() for n in loaded.class_names.numpy()]
            palette = loaded.palette.numpy()
            serve = loaded.signatures["serving_default"]
        except (tf.errors.OpError, ValueError, OSError, AttributeError, KeyError) as e:
            reason = one_line(getattr(e, "message", None) or e)[:160]
            raise RunError(
                f"--export_dir={export_dir} is not a SavedModel of mgml_tf.export ({reason}); "
                "export the model again with mgml_tf.export"
            ) from None
        return cls(class_names, palette, serve, loaded.signatures.get("memory_weights"), export_dir, loaded)

    @classmethod
    def from_model_dir(cls, model_dir):
        from mgml_tf.training import model_dir as md

        model, _, path = md.build_from_dir(model_dir)
        return cls.from_model(model, path)

    @classmethod
    def from_preset(cls, preset_dir):
        """The model of a preset folder (``python -m mgml_tf.preset``), checked before it is built."""
        from mgml_tf.training import preset

        return cls.from_model(preset.from_preset(preset_dir), preset_dir)

    @classmethod
    def from_model(cls, model, source):
        """A Keras ``model`` through the signatures of ``serving_module``; ``source`` names where it came from."""
        module, signatures, meta = serving_module(model)
        palette = np.asarray(meta["palette"], np.uint8)
        return cls(
            meta["class_names"],
            palette,
            signatures["serving_default"],
            signatures.get("memory_weights"),
            source,
            module,
        )

    def run(self, image, want_weights):
        x = tf.constant(image[None])
        if want_weights and self._memory is not None:
            out = self._memory(images=x)
            return out["labels"][0].numpy(), out["memory_weights"][0].numpy()
        out = self._serve(images=x)
        return out["labels"][0].numpy(), None


def load(export_dir=None, model_dir=None, preset=None):
    """The ``ServedModel`` of a SavedModel folder (``export_dir``), else of a preset folder, else of a model_dir."""
    if export_dir:
        return ServedModel.from_export_dir(export_dir)
    return ServedModel.from_preset(preset) if preset else ServedModel.from_model_dir(model_dir)
