"""``python -m mgml_tf.export --model_dir=DIR --export_dir=DIR``: a SavedModel for serving.

Rebuilds the model from ``DIR/flags.json``, restores the newest checkpoint, writes the SavedModel of
``mgml_tf.serving`` (signatures ``serving_default`` and, with a memory, ``memory_weights``; uint8 images
``[B, H, W, 3]``; metadata in ``assets.extra/mgml_tf.json``; loadable with TensorFlow alone) and checks that
the reloaded SavedModel agrees with the Keras model.

``--flagfile`` may be the training flagfile: the training flags this command does not use are ignored, with one
line naming them (docs/CLI.md, "One flagfile for every command").
"""

import os

from mgml_tf.cli import common
from mgml_tf.errors import RunError, UsageError

PROG = "mgml_tf.export"


def make_flags():
    from absl import flags

    fv = flags.FlagValues()
    flags.DEFINE_string("model_dir", None, "Run directory written by mgml_tf.train.", flag_values=fv)
    flags.DEFINE_string(
        "export_dir", None, "Output SavedModel folder (must not exist, or use --overwrite).", flag_values=fv
    )
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --export_dir.", flag_values=fv)
    return fv


def main(argv):
    common.quiet_import()
    fv = make_flags()
    common.report_ignored(PROG, common.parse_command_flags(fv, argv, PROG))
    for name in ("model_dir", "export_dir"):
        if not fv[name].value:
            raise UsageError(f"--{name} is required")
    if not os.path.isdir(fv.model_dir):
        raise UsageError(f"--model_dir={fv.model_dir} not found")
    if os.path.exists(fv.export_dir) and not fv.overwrite:
        raise UsageError(f"--export_dir={fv.export_dir} exists; remove it or pass --overwrite")
    common.check_writable("export_dir", fv.export_dir)

    from mgml_tf import serving
    from mgml_tf.training import model_dir as md

    model, config, path = md.build_from_dir(fv.model_dir)
    step = int(model.optimizer.iterations.numpy())
    serving.export(model, fv.export_dir, config=config, step=step)
    # Self-check: the reloaded SavedModel agrees with the Keras model on a test image.
    err, signatures = serving.export_difference(model, fv.export_dir)
    if not err < 1e-4:
        raise RunError(f"the exported model disagrees with the Keras model (max |dp| = {err:.2e})")
    print(
        f"exported {path} (step {step}) to {fv.export_dir}; signatures: "
        f"{', '.join(signatures)}; max |probability difference| vs Keras {err:.1e}"
    )
    return 0
