"""``python -m mgml_tf.evaluate --model_dir=DIR [--targets=...] [--output_json=FILE] [--sliding_window
--window_size=H,W --flip] [--num_classes_protocol=19|16] [--save_predictions=DIR]``

Rebuilds the model from ``DIR/flags.json``, restores the newest checkpoint and prints, per target domain, a
per-class IoU table and the mIoU (percent). Targets default to those of the training run. Prediction PNGs
(``--save_predictions``) hold Cityscapes label ids, so ``cityscapesscripts`` can score them independently.

``--flagfile`` may be the training flagfile: the training flags this command does not use are ignored, with one
line naming them (docs/CLI.md, "One flagfile for every command").
"""

import os

from mgml_tf.cli import common
from mgml_tf.cli import preset as preset_cli
from mgml_tf.errors import RunError, UsageError
from mgml_tf.files import atomic_write_bytes, write_json

PROG = "mgml_tf.evaluate"


def make_flags():
    from absl import flags

    from mgml_tf.cli import flags as flags_lib

    fv = flags.FlagValues()
    flags.DEFINE_string("model_dir", None, "Run directory written by mgml_tf.train.", flag_values=fv)
    preset_cli.define_preset_flag(fv, "--model_dir")
    flags.DEFINE_string("output_json", None, "Write {target: {mIoU, IoU, num_images}} (percent) here.", flag_values=fv)
    flags.DEFINE_string(
        "save_predictions", None, "Write prediction PNGs (Cityscapes label ids) under DIR/<target>/.", flag_values=fv
    )
    flags_lib.define_eval_flags(fv)
    flags_lib.define_synthetic_flags(fv)
    return fv


def _same(a, b):
    """Flag values equal as the run recorded them and as a flagfile gives them (lists of strings or integers,
    numbers as text, an empty string for None)."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return [str(v) for v in a or ()] == [str(v) for v in b or ()]
    if a in (None, "") or b in (None, ""):
        return a in (None, "") and b in (None, "")
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _take_recorded(fv, from_training, config, where):
    """The run's record wins over a training flagfile (docs/CLI.md, "One flagfile for every command"): each flag
    evaluate shares with training whose value a training flagfile gave takes the value ``MODEL_DIR/flags.json``
    (or the preset's ``training.json``: ``config``, read from ``where``) recorded (``--targets``: the run's resolved
    targets, as without the flag), before any check; a flag the run did not record keeps the flagfile's value.
    Returns the note for the ignore line naming the values that differed from the flagfile's, or ""."""
    names = [n for n in from_training if n not in ("model_dir", "preset")]
    if not names:
        return ""
    saved = (config or {}).get("flags")
    if not isinstance(saved, dict):
        return ""
    changed = []
    for name in names:
        if name not in saved:
            continue
        if not _same(fv[name].value, saved[name]):
            changed.append(f"--{name}")
        if name == "targets":
            fv[name].value, fv[name].present = fv[name].default, 0
        elif isinstance(saved[name], (list, tuple)):
            fv[name].value = [str(v) for v in saved[name]]
        else:
            fv[name].value = saved[name]
    if not changed:
        return ""
    return f"{', '.join(changed)} as the run recorded them in {where}, not as the flagfile gives them"


def _safe(label):
    return label.replace(":", "_").replace(os.sep, "_")


def main(argv):
    common.quiet_import()
    from mgml_tf.cli import flags as flags_lib
    from mgml_tf.training import data as data_lib
    from mgml_tf.training import model_dir as md
    from mgml_tf.training import preset as preset_lib

    fv = make_flags()
    parsed = common.parse_command_flags(fv, argv, PROG)
    source, note = preset_cli.one_model_source(fv, parsed, ("model_dir", "preset"))
    preset = config = where = None
    if source == "preset":  # checked (version, manifest, configuration) before anything else
        preset = preset_lib.open_preset(fv.preset)
        config, where = preset.training, os.path.join(fv.preset, preset_lib.TRAINING)
    elif os.path.isdir(fv.model_dir):
        try:
            config, where = md.load_config(fv.model_dir), os.path.join(fv.model_dir, md.CONFIG_JSON)
        except RunError:
            pass  # reported where the configuration is read below
    recorded = _take_recorded(fv, parsed.from_training, config, where)
    common.report_ignored(PROG, parsed, "; ".join(n for n in (note, recorded) if n))
    flags_lib.validate_eval_flags(fv)
    flags_lib.validate_synthetic_flags(fv)
    data_lib.check_specs(fv.targets, "targets")
    if preset is None and not os.path.isdir(fv.model_dir):
        raise UsageError(f"--model_dir={fv.model_dir} not found")
    if fv.output_json:
        common.check_writable("output_json", fv.output_json, folder=False)
    if fv.save_predictions:
        common.check_writable("save_predictions", fv.save_predictions)

    from mgml_tf import metrics as metrics_lib
    from mgml_tf import visualize as vis
    from mgml_tf.evaluation import EvaluationSettings, evaluate_targets

    if preset is None:
        config = md.load_config(fv.model_dir)
    if config is None:
        raise RunError(f"{fv.model_dir} has no {md.CONFIG_JSON}: not a model_dir written by mgml_tf.train")
    saved = config.get("flags", {})
    for name in (
        "synthetic_root",
        "synthetic_num_train",
        "synthetic_num_val",
        "synthetic_height",
        "synthetic_width",
        "synthetic_family",
        "synthetic_num_source_val",
        "num_classes_protocol",
        "max_eval_images",
    ):
        if not fv[name].present and name in saved:
            fv[name].value = saved[name]
    if fv.targets:
        specs = data_lib.expand(fv.targets, "target", fv)
    else:
        specs = config["resolved"]["targets"]
    if not specs:
        raise UsageError("no targets: give --targets=name:root,... (the run had none)")
    targets = data_lib.load(specs, "val", "targets")

    if preset is None:
        model, config, path = md.build_from_dir(fv.model_dir)
        step, ignore_index = int(model.optimizer.iterations.numpy()), config["options"]["ignore_index"]
    else:
        model, path, step, ignore_index = preset.build_model(), fv.preset, preset.step, preset.options["ignore_index"]
    settings = EvaluationSettings.from_flags(fv, int(ignore_index))
    protocol = settings.num_classes_protocol
    if protocol == 16 and model.num_classes != 19:
        raise UsageError(f"--num_classes_protocol=16 needs a 19-class model, this one has {model.num_classes}")
    print(f"evaluating {path} (step {step}), {settings.describe()}, {protocol}-class mIoU", flush=True)

    def save(sample):
        stem = os.path.splitext(os.path.basename(sample.path))[0]
        out = os.path.join(fv.save_predictions, _safe(sample.target), stem + "_labelIds.png")
        atomic_write_bytes(out, vis.encode_png(vis.label_ids(sample.prediction)))

    def report(label, result):
        print(f"{label}: mIoU {result['mIoU']} over {result['num_images']} images", flush=True)

    results = evaluate_targets(
        model, targets, settings, step=step, on_image=save if fv.save_predictions else None, on_target=report
    )
    print(metrics_lib.format_table(results))
    if fv.output_json:
        write_json(fv.output_json, results)
        print(f"wrote {fv.output_json}")
    return 0
