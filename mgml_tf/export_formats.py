"""Export formats beside the SavedModel: ONNX (``model.onnx``, run with ONNX Runtime) and LiteRT
(``model.tflite``, run with the LiteRT interpreter), written by Keras 3's own ``Model.export``.

Both hold the inference graph of ``mgml_tf.serving``'s ``serving_default`` and its contract: one input
``images`` (uint8 ``[B, H, W, 3]``, RGB, any batch and size, both dynamic in the file) and two outputs,
``labels`` (uint8 ``[B, H, W]``, train ids) and ``probabilities`` (float32 ``[B, H, W, N]``). The network runs
in inference mode (BatchNorm moving statistics, the memory read as it is), so the auxiliary head, the update
network and the memory classifier, which only training uses, are not in the files. What differs from the
SavedModel (docs/EXPORT.md): no ``memory_weights`` output, and the input's rank, channel count and dtype are
checked by the runtime itself (its own error) rather than by the SavedModel's one-line check; the LiteRT
interpreter checks the dtype only (``load`` checks the rest before either runtime runs).

An export folder holds the model file and ``mgml_tf.json`` (class names, palette, step, training
configuration, format, file name and the measured difference from the Keras model); the ONNX file carries the
same metadata in its ``metadata_props`` (key ``mgml_tf``).

* ``check_format(name)``, ``check_dependencies(name)``: one-line refusals before any work;
* ``export(model, export_dir, fmt)``: writes the folder (through a temporary sibling renamed into place, after
  the self-check: the exported file, run by its runtime, against the Keras model);
* ``load(export_dir)``: a callable ``images -> {"labels", "probabilities"}`` over the file's runtime.
"""

import contextlib
import importlib.util
import json
import os
import shutil
import warnings

import numpy as np

from mgml_tf.errors import RunError, UsageError, one_line
from mgml_tf.files import atomic_write_text, is_no_space

FORMATS = ("savedmodel", "onnx", "litert")
FILE_NAMES = {"onnx": "model.onnx", "litert": "model.tflite"}
METADATA = "mgml_tf.json"
# The modules each format needs beyond TensorFlow and Keras, and the pip extra of setup.cfg that installs them.
DEPENDENCIES = {"onnx": ("onnx", ("tf2onnx", "onnx", "onnxruntime")), "litert": ("litert", ("ai_edge_litert",))}
# The exported file must agree with the Keras model to this (max |probability difference|), as the SavedModel.
TOLERANCE = 1e-4


def check_format(name):
    """Refuses (``UsageError``) a format other than ``FORMATS``."""
    if name not in FORMATS:
        raise UsageError(f"--format={name} is not supported; supported formats: {', '.join(FORMATS)}")


def check_dependencies(fmt):
    """Refuses (``UsageError``) a format whose converter or runtime is not installed, naming the pip extra."""
    extra, modules = DEPENDENCIES.get(fmt, (None, ()))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--format={fmt} needs {', '.join(missing)} (not installed): pip install 'mgml_tf[{extra}]'")


def inference_model(model):
    """A Keras model around the segmenter ``model``: uint8 images -> ``labels`` and ``probabilities``, as the
    SavedModel's ``serving_default``."""
    import keras
    import tensorflow as tf

    class SegmenterInference(keras.Model):
        """Inference mode, softmax and arg max of a MemorySegmenter; owns no variables of its own."""

        def __init__(self, segmenter, **kwargs):
            super().__init__(**kwargs)
            self.segmenter = segmenter
            self.built = True  # the segmenter is built (restored): nothing of this wrapper remains to build

        def call(self, images):
            probabilities = tf.nn.softmax(self.segmenter(tf.cast(images, tf.float32), training=False), axis=-1)
            # tf.argmax, not keras.ops.argmax: the latter's TensorFlow form uses Bitcast and BitwiseAnd, which
            # neither ONNX nor LiteRT's builtin operators have.
            labels = tf.cast(tf.argmax(probabilities, axis=-1), label_dtype)
            return {"labels": labels, "probabilities": probabilities}

    label_dtype = tf.uint8 if int(model.num_classes) <= 256 else tf.int32
    return SegmenterInference(model, name="mgml_tf_inference")


def _input_signature():
    import tensorflow as tf

    return [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]


def explicit_dilated_padding(onnx_model):
    """Rewrites the dilated, stride-1 ``Conv`` nodes that tf2onnx leaves with ``auto_pad=SAME_UPPER`` (it does
    so when the image size is unknown) to explicit ``pads``; returns how many it rewrote.

    ONNX Runtime refuses dilation with ``SAME_*`` auto padding at run time. With stride 1 the padding SAME
    needs does not depend on the image size (``dilation * (kernel - 1)`` in total, the extra pixel at the end
    for SAME_UPPER, as TensorFlow pads), so explicit pads keep every size exact.
    """
    from onnx import helper

    rewritten = 0
    for node in onnx_model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("auto_pad", b"NOTSET")
        dilations = list(attrs.get("dilations", []))
        if mode not in (b"SAME_UPPER", b"SAME_LOWER") or all(d == 1 for d in dilations):
            continue
        if any(s != 1 for s in attrs.get("strides", [1] * len(dilations))) or "kernel_shape" not in attrs:
            continue  # not produced by this project's networks; ONNX Runtime's own error then says why
        totals = [d * (k - 1) for d, k in zip(dilations, attrs["kernel_shape"])]
        begin = [t // 2 if mode == b"SAME_UPPER" else t - t // 2 for t in totals]
        kept = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(helper.make_attribute("pads", begin + [t - b for t, b in zip(totals, begin)]))
        rewritten += 1
    return rewritten


def register_erfc_conversion():
    """Teaches tf2onnx ``Erfc`` as ``1 - Erf`` (ONNX has Erf, opset 9, and no Erfc), unless it knows it already.

    TensorFlow's exact GELU (``tf.nn.gelu(approximate=False)``, in the MLPs of keras-hub's DINOv2 and DINOv3) is
    ``0.5 x erfc(-x / sqrt(2))``, and tf2onnx 1.17 has no Erfc: without this the ViT backbones do not export.
    Registered through tf2onnx's own handler decorator; ``1 - erf`` loses the relative precision of erfc's far
    tail only, where GELU's value is below 1e-7 |x|.
    """
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    if any("Erfc" in handlers for handlers in tf_op.get_opsets().get("", [])):
        return

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            node.type = "Erf"
            numpy_type = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, numpy_type))
            complement = ctx.insert_new_node_on_output(
                "Sub", node.output[0], name=utils.make_name(node.name), inputs=[one.output[0], node.output[0]]
            )
            ctx.copy_shape(node.output[0], complement.output[0])
            ctx.set_dtype(complement.output[0], ctx.get_dtype(node.output[0]))


@contextlib.contextmanager
def _converter_quiet():
    # Keras's tf2onnx patch for NumPy 2 tests for np.object (a FutureWarning), and tf2onnx logs every
    # rewrite at INFO: neither is of use to the person exporting.
    import logging

    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _write_onnx(wrapper, path, meta):
    import onnx

    register_erfc_conversion()
    with _converter_quiet():
        wrapper.export(path, format="onnx", input_signature=_input_signature(), verbose=False)
    onnx_model = onnx.load(path)
    explicit_dilated_padding(onnx_model)
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = "mgml_tf", json.dumps(meta)
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, path)
    return {"opset": max(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx"))}


def _write_litert(wrapper, path, meta):
    import tensorflow as tf

    # TensorFlow Lite's builtin operators only: a file that needs the Flex (select TensorFlow ops) delegate
    # would not run in the plain LiteRT interpreter, so such a model is refused here rather than on a device.
    try:
        with _converter_quiet():
            wrapper.export(
                path,
                format="litert",
                input_signature=_input_signature(),
                verbose=False,
                target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
            )
    except Exception as e:  # noqa: BLE001 (the converter raises its own ConverterError and others)
        raise RunError(
            f"LiteRT's converter refused the model ({one_line(getattr(e, 'message', None) or e)[:300]})"
        ) from None
    return {}


def export(model, export_dir, fmt, config=None, step=None):
    """Writes ``export_dir`` (the model file and ``mgml_tf.json``) for ``fmt`` ('onnx' or 'litert') and
    checks it: the file run by its runtime must agree with the Keras ``model`` (``export_difference``), or
    nothing is written. Returns the metadata (``max_probability_difference`` included)."""
    from mgml_tf import serving

    check_format(fmt)
    if fmt not in FILE_NAMES:
        raise ValueError(f"export_formats.export writes {', '.join(FILE_NAMES)}; the SavedModel is serving.export")
    check_dependencies(fmt)
    _, _, classes = serving.serving_module(model)  # the class names and palette the SavedModel carries
    meta = {
        "format": fmt,
        "file": FILE_NAMES[fmt],
        **classes,
        "step": step,
        "inputs": {"images": "uint8 [batch, height, width, 3]"},
        "outputs": {"labels": "uint8 [batch, height, width]", "probabilities": "float32 [batch, height, width, N]"},
    }
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.abspath(export_dir) + f".partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        path = os.path.join(tmp, FILE_NAMES[fmt])
        writer = _write_onnx if fmt == "onnx" else _write_litert
        meta.update(writer(inference_model(model), path, {k: meta[k] for k in ("class_names", "palette", "step")}))
        atomic_write_text(os.path.join(tmp, METADATA), json.dumps({**meta, "config": config}, indent=1) + "\n")
        err = export_difference(model, tmp)
        if not err < TOLERANCE:
            raise RunError(
                f"the exported {fmt} model disagrees with the Keras model (max |dp| = {err:.2e} >= {TOLERANCE}); "
                "nothing written"
            )
        meta["max_probability_difference"] = err
        atomic_write_text(os.path.join(tmp, METADATA), json.dumps({**meta, "config": config}, indent=1) + "\n")
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.rename(tmp, export_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_no_space(e):
            raise RunError(
                f"no space left on device while exporting to {export_dir}: the partial export is removed; "
                "free some space and export again"
            ) from None
        raise
    return meta


def read_metadata(export_dir):
    """The ``mgml_tf.json`` of an ONNX or LiteRT export folder."""
    path = os.path.join(export_dir, METADATA)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        fmt = meta["format"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path} is not the metadata of an mgml_tf ONNX or LiteRT export ({one_line(e)})") from None
    if fmt not in FILE_NAMES:
        raise RunError(f"{path} names format {fmt!r}; expected one of {', '.join(FILE_NAMES)}")
    return meta


def checked_images(images):
    """``images`` as a uint8 array ``[B, H, W, 3]`` with B, H, W >= 1, else ``ValueError`` (one line). The
    SavedModel's check, for the runtimes: the LiteRT interpreter reshapes its input to any rank it is given."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or min(images.shape[:3]) < 1:
        raise ValueError(
            "images must be uint8 [batch, height, width, 3] (RGB) with batch, height and width >= 1; "
            f"got {images.dtype} {list(images.shape)}"
        )
    return images


def load(export_dir):
    """``run(images uint8 [B, H, W, 3]) -> {"labels", "probabilities"}`` (NumPy) over the ONNX or LiteRT file in
    ``export_dir``, run by ONNX Runtime or the LiteRT interpreter; ``images`` go through ``checked_images``."""
    meta = read_metadata(export_dir)
    check_dependencies(meta["format"])
    path = os.path.join(export_dir, FILE_NAMES[meta["format"]])
    if meta["format"] == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]

        def run(images):
            return dict(zip(names, session.run(names, {"images": checked_images(images)})))

        return run
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")

    def run(images):
        return {k: np.asarray(v) for k, v in runner(images=checked_images(images)).items()}

    return run


def export_difference(model, export_dir, images=None):
    """Max |probability difference| of the ONNX or LiteRT file in ``export_dir``, run by its runtime, against
    the Keras ``model``, on ``images`` (uint8 [B, H, W, 3]; default: one random image, seed 0, 67x91, the
    SavedModel's check)."""
    import tensorflow as tf

    if images is None:
        images = np.random.default_rng(0).integers(0, 256, size=(1, 67, 91, 3), dtype=np.uint8)
    got = load(export_dir)(images)["probabilities"]
    want = tf.nn.softmax(model(tf.constant(images, tf.float32), training=False), axis=-1).numpy()
    return float(np.max(np.abs(got - want)))
