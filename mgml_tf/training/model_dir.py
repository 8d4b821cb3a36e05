"""The model directory of one run (DESIGN §9).

    MODEL_DIR/
      flags.cfg            resolved flags of the last run (a flagfile: --flagfile=MODEL_DIR/flags.cfg resumes)
      flags.json           the same as JSON, plus the resolved domains and the build_model options
      checkpoints/         ckpt-<step>.index / .data-*, the `checkpoint` state file (newest K kept)
      train/, eval/        TensorBoard event files
      eval_results.json    {target: {"mIoU", "IoU", "num_images", "protocol", "step"}} of the last evaluation
      eval_history.jsonl   one line per evaluation
"""
import json
import os

from mgml_tf.training import flags as flags_lib
from mgml_tf.training.cli import RunError

CONFIG_JSON = "flags.json"
CONFIG_CFG = "flags.cfg"
EVAL_JSON = "eval_results.json"
EVAL_HISTORY = "eval_history.jsonl"


def resolved_architecture(options):
    """The architecture keys with implied values filled in (output stride per head, memory per method)."""
    arch = {k: options.get(k) for k in flags_lib.ARCHITECTURE_KEYS}
    if arch["output_stride"] is None:
        arch["output_stride"] = 16 if arch["head"] == "deeplabv3plus" else 8
    if arch["method"] in ("baseline", "mldg"):
        arch["use_memory"] = False
    if arch["aspp_rates"] is not None:
        arch["aspp_rates"] = [int(r) for r in arch["aspp_rates"]]
    if not arch["use_memory"]:
        arch["use_update_network"] = None
    return arch


def load_config(model_dir):
    """The saved configuration of ``model_dir`` or None when there is none."""
    path = os.path.join(model_dir, CONFIG_JSON)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path}: {e}") from None


def check_compatible(model_dir, options):
    """Refuses a ``model_dir`` whose saved configuration has another architecture, num_classes or method."""
    saved = load_config(model_dir)
    if saved is None:
        return None
    old = resolved_architecture(saved["options"])
    new = resolved_architecture(options)
    diffs = [f"{k}={old[k]!r} (saved) vs {new[k]!r} (now)" for k in flags_lib.ARCHITECTURE_KEYS
             if old[k] != new[k]]
    if diffs:
        raise RunError(f"--model_dir={model_dir} was made with another configuration: {'; '.join(diffs)}; "
                       "use a new --model_dir (or the saved flags: --flagfile="
                       f"{os.path.join(model_dir, CONFIG_CFG)})")
    return saved


def changed_options(saved, options):
    """Non-architecture options that differ from the saved run (allowed on resume, reported)."""
    if saved is None:
        return {}
    old = saved.get("options", {})
    return {k: (old.get(k), v) for k, v in options.items()
            if k in old and _norm(old.get(k)) != _norm(v) and k not in flags_lib.ARCHITECTURE_KEYS}


def _norm(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def json_options(options):
    return {k: _norm(v) for k, v in options.items()}


def build_from_dir(model_dir, log=print, restore=True):
    """``(model, config, checkpoint_path)``: the model rebuilt from ``flags.json``, newest checkpoint restored."""
    import mgml_tf
    from mgml_tf.training import checkpoints

    if not os.path.isdir(model_dir):
        raise RunError(f"--model_dir={model_dir} not found")
    config = load_config(model_dir)
    if config is None:
        raise RunError(f"{model_dir} has no {CONFIG_JSON}: not a model_dir written by mgml_tf.train")
    options = dict(config["options"])
    options["aspp_rates"] = tuple(options["aspp_rates"])
    model = mgml_tf.build_model(**options)
    checkpoint = checkpoints.checkpoint_object(model)
    ckpt_manager = checkpoints.manager(checkpoint, model_dir, keep=None)
    path = checkpoints.restore_latest(model, checkpoint, ckpt_manager, log=log) if restore else None
    if restore and path is None:
        raise RunError(f"no checkpoint in {os.path.join(model_dir, 'checkpoints')}: train first")
    return model, config, path
