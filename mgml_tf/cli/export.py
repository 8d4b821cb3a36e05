"""``python -m mgml_tf.export --model_dir=DIR --export_dir=DIR``: a SavedModel for serving.

Rebuilds the model from ``DIR/flags.json``, restores the newest checkpoint, writes the SavedModel of
``mgml_tf.serving`` (signatures ``serving_default`` and, with a memory, ``memory_weights``; uint8 images
``[B, H, W, 3]``; metadata in ``assets.extra/mgml_tf.json``; loadable with TensorFlow alone) and checks that
the reloaded SavedModel agrees with the Keras model.

``--export_version=N`` (or ``step``: the checkpoint's step) writes it to ``--export_dir/N/`` instead, the layout
TF Serving loads (a base folder of numbered versions, the highest served); other versions in the base folder
are kept (docs/SERVING.md).

``--format=onnx`` or ``--format=litert`` writes ``--export_dir/model.onnx`` or ``--export_dir/model.tflite`` (with
``mgml_tf.json``) instead: the same inference graph and uint8 input through Keras's own export, checked by
running the file with ONNX Runtime or the LiteRT interpreter (``mgml_tf.export_formats``, docs/EXPORT.md).

``--flagfile`` may be the training flagfile: the training flags this command does not use are ignored, with one
line naming them (docs/CLI.md, "One flagfile for every command").
"""

import contextlib
import os

from mgml_tf.cli import common
from mgml_tf.cli import preset as preset_cli
from mgml_tf.errors import RunError, UsageError

PROG = "mgml_tf.export"


def make_flags():
    from absl import flags

    fv = flags.FlagValues()
    flags.DEFINE_string("model_dir", None, "Run directory written by mgml_tf.train.", flag_values=fv)
    preset_cli.define_preset_flag(fv, "--model_dir")
    flags.DEFINE_string(
        "export_dir", None, "Output SavedModel folder (must not exist, or use --overwrite).", flag_values=fv
    )
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --export_dir.", flag_values=fv)
    flags.DEFINE_string(
        "format",
        "savedmodel",
        "savedmodel (TensorFlow, TF Serving), onnx (--export_dir/model.onnx, pip extra [onnx]) or litert "
        "(--export_dir/model.tflite, pip extra [litert]); docs/EXPORT.md.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "export_version",
        None,
        "Write the SavedModel to --export_dir/N/ for TF Serving: a version number N, or 'step' (the checkpoint's "
        "step); empty: into --export_dir itself.",
        flag_values=fv,
    )
    return fv


def _version(value):
    """None, 'step' or a non-negative integer, from ``--export_version``."""
    if not value:
        return None
    if value == "step" or (value.isdigit() and int(value) >= 0):
        return value if value == "step" else int(value)
    raise UsageError(f"--export_version={value!r} must be a version number (0, 1, ...) or 'step'")


def main(argv):
    with contextlib.ExitStack() as held:  # the export's writer lock, released when it ends
        return _export(argv, held)


def _export(argv, held):
    common.quiet_import()
    fv = make_flags()
    parsed = common.parse_command_flags(fv, argv, PROG)
    source, note = preset_cli.one_model_source(fv, parsed, ("model_dir", "preset"))
    common.report_ignored(PROG, parsed, note)
    if not fv.export_dir:
        raise UsageError("--export_dir is required")
    if source == "model_dir" and not os.path.isdir(fv.model_dir):
        raise UsageError(f"--model_dir={fv.model_dir} not found")
    preset = None
    if source == "preset":  # checked (version, manifest, configuration) before anything is written
        from mgml_tf.training import preset as preset_lib

        preset = preset_lib.open_preset(fv.preset)
    version = _version(fv.export_version)
    from mgml_tf import export_formats

    export_formats.check_format(fv.format)
    if fv.format != "savedmodel" and version is not None:
        raise UsageError(f"--export_version is TF Serving's SavedModel layout; leave it out with --format={fv.format}")
    export_formats.check_dependencies(fv.format)
    if version is None and os.path.exists(fv.export_dir) and not fv.overwrite:
        raise UsageError(f"--export_dir={fv.export_dir} exists; remove it or pass --overwrite")
    if isinstance(version, int) and os.path.exists(os.path.join(fv.export_dir, str(version))) and not fv.overwrite:
        raise UsageError(
            f"version {version} exists in --export_dir={fv.export_dir}; pass --overwrite or another version"
        )
    common.check_writable("export_dir", fv.export_dir)
    from mgml_tf.training import writer_lock

    held.enter_context(writer_lock.export_lock(fv.export_dir, PROG))

    from mgml_tf import serving
    from mgml_tf.training import model_dir as md

    if preset is not None:
        model, config, path, step = preset.build_model(), preset.training, fv.preset, preset.step
    else:
        model, config, path = md.build_from_dir(fv.model_dir)
        step = int(model.optimizer.iterations.numpy())
    if fv.format != "savedmodel":
        with common.quiet_stderr():  # the converters' and runtimes' start-up chatter
            meta = export_formats.export(model, fv.export_dir, fv.format, config=config, step=step)
        runtime = "ONNX Runtime" if fv.format == "onnx" else "the LiteRT interpreter"
        print(
            f"exported {path} (step {step}) to {os.path.join(fv.export_dir, meta['file'])}; max |probability "
            f"difference| vs Keras, run with {runtime}: {meta['max_probability_difference']:.1e}"
        )
        return 0
    target = (
        fv.export_dir if version is None else os.path.join(fv.export_dir, str(step if version == "step" else version))
    )
    if version == "step" and os.path.exists(target) and not fv.overwrite:
        raise UsageError(f"version {step} (the step) exists in --export_dir={fv.export_dir}; pass --overwrite")
    serving.export(model, target, config=config, step=step)
    # Self-check: the reloaded SavedModel agrees with the Keras model on a test image.
    err, signatures = serving.export_difference(model, target)
    if not err < 1e-4:
        raise RunError(f"the exported model disagrees with the Keras model (max |dp| = {err:.2e})")
    print(
        f"exported {path} (step {step}) to {target}; signatures: "
        f"{', '.join(signatures)}; max |probability difference| vs Keras {err:.1e}"
    )
    return 0
