"""``python -m mgml_tf.preset --model_dir=DIR --preset_dir=OUT [--overwrite]``: a shareable preset.

Packs the newest checkpoint of a model directory into a self-contained folder of plain files: the configuration
that rebuilds the network, every variable with the memory (HDF5), the class names and palette, the
training summary, the evaluation table when there is one, and a manifest of every file's size and sha256
(``mgml_tf.training.preset``). ``--preset=OUT`` then serves evaluate, predict, export and train (fine-tuning);
``mgml_tf.from_preset(OUT)`` is the Keras model. docs/CLI.md, "Presets".
"""

import os

from mgml_tf.cli import common
from mgml_tf.errors import UsageError

PROG = "mgml_tf.preset"


def make_flags():
    from absl import flags

    fv = flags.FlagValues()
    flags.DEFINE_string(
        "model_dir", None, "Run directory written by mgml_tf.train (newest checkpoint).", flag_values=fv
    )
    flags.DEFINE_string(
        "preset_dir", None, "Output preset folder (must not exist, or use --overwrite).", flag_values=fv
    )
    flags.DEFINE_boolean("overwrite", False, "Replace an existing preset at --preset_dir.", flag_values=fv)
    return fv


def define_preset_flag(fv, instead_of):
    """``--preset`` of evaluate, export, predict and train: the model comes from a preset folder (``instead_of``
    names what it replaces in the help)."""
    from absl import flags

    flags.DEFINE_string(
        "preset", None, f"Preset folder written by mgml_tf.preset (instead of {instead_of}).", flag_values=fv
    )


def one_model_source(fv, parsed, names):
    """The one flag of ``names`` (e.g. ``model_dir``, ``preset``) that gives the model, and the note for the line
    of ignored training flags. A ``--model_dir`` from a training flagfile yields to a ``--preset`` given (docs/CLI.md,
    "One flagfile for every command"); two sources otherwise are a usage error, as is none."""
    note = ""
    if fv["preset"].value and fv["model_dir"].value and "model_dir" in parsed.from_training:
        fv["model_dir"].value, fv["model_dir"].present = None, 0
        note = "nor its --model_dir, as --preset is given"
    given = [name for name in names if fv[name].value]
    if len(given) != 1:
        listed = ", ".join(f"--{name}" for name in names[:-1]) + f" or --{names[-1]}"
        both = f" ({' and '.join(f'--{name}' for name in given)} both name the model)" if given else ""
        raise UsageError(f"give exactly one of {listed}{both}")
    return given[0], note


def take_preset_options(fv, preset):
    """``train --preset``: every network, method and optimiser flag not given takes the preset's value, so that
    fine-tuning needs only the new data flags; a given flag that would change the architecture is refused (the
    weights fit the preset's), as is ``--backbone_weights`` (the weights come from the preset). Other given flags
    (``--learning_rate``, ``--train_steps``, ``--meta_order``, ...) apply to the fine-tuning."""
    from mgml_tf import config as config_lib
    from mgml_tf.training import model_dir as md

    if fv["backbone_weights"].value:
        raise UsageError("--backbone_weights with --preset: the weights come from the preset; drop --backbone_weights")
    given = {name: fv[name].value for name in preset.options if name in fv and fv[name].present}
    for name, value in preset.options.items():
        if name in fv and name not in given:
            fv[name].value = [str(v) for v in value] if isinstance(value, (list, tuple)) else value
    wanted = md.resolved_architecture({**preset.options, **given})
    theirs = md.resolved_architecture(preset.options)
    differ = [
        f"--{k}={wanted[k]!r} (given) vs {theirs[k]!r} (the preset)"
        for k in config_lib.ARCHITECTURE_KEYS
        if k in given and wanted[k] != theirs[k]
    ]
    if differ:
        raise UsageError(
            f"--preset={preset.path} fixes the architecture, and {'; '.join(differ)}; drop these flags (fine-tuning "
            "keeps the preset's network)"
        )


def main(argv):
    common.quiet_import()
    fv = make_flags()
    common.report_ignored(PROG, common.parse_command_flags(fv, argv, PROG))
    for name in ("model_dir", "preset_dir"):
        if not fv[name].value:
            raise UsageError(f"--{name} is required")
    if not os.path.isdir(fv.model_dir):
        raise UsageError(f"--model_dir={fv.model_dir} not found")
    from mgml_tf.training import preset

    preset.check_destination(fv.preset_dir, fv.overwrite)
    common.check_writable("preset_dir", fv.preset_dir)
    preset.pack(fv.model_dir, fv.preset_dir, overwrite=fv.overwrite)
    return 0
