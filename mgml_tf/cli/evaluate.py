"""``python -m mgml_tf.evaluate --model_dir=DIR [--targets=...] [--output_json=FILE] [--sliding_window
--window_size=H,W --flip] [--num_classes_protocol=19|16] [--save_predictions=DIR]``

Rebuilds the model from ``DIR/flags.json``, restores the newest checkpoint and prints, per target domain, a
per-class IoU table and the mIoU (percent). Targets default to those of the training run. Prediction PNGs
(``--save_predictions``) hold Cityscapes label ids, so ``cityscapesscripts`` can score them independently.
"""

import os

from mgml_tf.cli import common
from mgml_tf.errors import RunError, UsageError
from mgml_tf.files import atomic_write_bytes, write_json

PROG = "mgml_tf.evaluate"


def make_flags():
    from absl import flags

    from mgml_tf.cli import flags as flags_lib

    fv = flags.FlagValues()
    flags.DEFINE_string("model_dir", None, "Run directory written by mgml_tf.train.", flag_values=fv)
    flags.DEFINE_string("output_json", None, "Write {target: {mIoU, IoU, num_images}} (percent) here.", flag_values=fv)
    flags.DEFINE_string(
        "save_predictions", None, "Write prediction PNGs (Cityscapes label ids) under DIR/<target>/.", flag_values=fv
    )
    flags_lib.define_eval_flags(fv)
    flags_lib.define_synthetic_flags(fv)
    return fv


def _safe(label):
    return label.replace(":", "_").replace(os.sep, "_")


def main(argv):
    common.quiet_import()
    from mgml_tf.cli import flags as flags_lib
    from mgml_tf.training import data as data_lib

    fv = make_flags()
    common.parse_flags(fv, argv, PROG)
    if not fv.model_dir:
        raise UsageError("--model_dir is required")
    flags_lib.validate_eval_flags(fv)
    flags_lib.validate_synthetic_flags(fv)
    data_lib.check_specs(fv.targets, "targets")
    if not os.path.isdir(fv.model_dir):
        raise UsageError(f"--model_dir={fv.model_dir} not found")
    if fv.output_json:
        common.check_writable("output_json", fv.output_json, folder=False)
    if fv.save_predictions:
        common.check_writable("save_predictions", fv.save_predictions)

    from mgml_tf import metrics as metrics_lib
    from mgml_tf import visualize as vis
    from mgml_tf.evaluation import EvaluationSettings, evaluate_targets
    from mgml_tf.training import model_dir as md

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

    model, config, path = md.build_from_dir(fv.model_dir)
    step = int(model.optimizer.iterations.numpy())
    settings = EvaluationSettings.from_flags(fv, int(config["options"]["ignore_index"]))
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
