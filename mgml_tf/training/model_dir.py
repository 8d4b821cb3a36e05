"""The model directory of one run (docs/DESIGN.md#the-model-directory).

MODEL_DIR/
  flags.cfg            resolved flags of the last run (a flagfile: --flagfile=MODEL_DIR/flags.cfg resumes)
  flags.json           the same as JSON, plus the resolved domains and the build_model options
  backbone.json        a keras-hub backbone's architecture (no weights): rebuilt without preset or network
  checkpoints/         ckpt-<step>.index / .data-*, the `checkpoint` state file (newest K kept)
  train/, eval/        TensorBoard event files
  eval_results.json    {target: {"mIoU", "IoU", "num_images", "protocol", "step"}} of the last evaluation
  eval_history.jsonl   one line per evaluation
"""

import json
import os

from mgml_tf import config as config_lib
from mgml_tf.errors import RunError
from mgml_tf.files import atomic_write_text, write_json
from mgml_tf.methods import METHODS

CONFIG_JSON = "flags.json"
CONFIG_CFG = "flags.cfg"
EVAL_JSON = "eval_results.json"
EVAL_HISTORY = "eval_history.jsonl"
BACKBONE_JSON = "backbone.json"


def resolved_architecture(options):
    """The architecture keys with implied values filled in (output stride per head, memory per method)."""
    arch = {k: options.get(k) for k in config_lib.ARCHITECTURE_KEYS}
    # Saved before the keras-hub backbones: their options at the defaults (a ResNet trains fully); the ranks
    # and token counts matter only to the tuning that uses them.
    arch["backbone_tuning"] = arch["backbone_tuning"] or "full"
    if arch["backbone_tuning"] != "lora":
        arch["lora_rank"] = None
    if arch["backbone_tuning"] != "adapter":
        arch["adapter_tokens"] = arch["adapter_rank"] = None
    if arch["output_stride"] is None:
        arch["output_stride"] = 16 if arch["head"] == "deeplabv3plus" else 8
    if arch["method"] in METHODS and not METHODS[arch["method"]].uses_memory:
        arch["use_memory"] = False
    if arch["aspp_rates"] is not None:
        arch["aspp_rates"] = [int(r) for r in arch["aspp_rates"]]
    if arch["memory_score_scale"] is None:
        arch["memory_score_scale"] = "fixed"  # a run saved before the option: the behaviour of that time
    if not arch["use_memory"]:
        arch["use_update_network"] = None
        arch["memory_score_scale"] = None
    return arch


def load_config(model_dir):
    """The saved configuration of ``model_dir`` (checked: `check_saved_config`) or None when there is none."""
    path = os.path.join(model_dir, CONFIG_JSON)
    if not os.path.exists(path):
        return None
    saved = _read_json(path, f"; restore the run's own {CONFIG_JSON}")
    check_saved_config(saved, path)
    return saved


#: The largest flags.json or backbone.json read (this package writes a few KB): a bigger one is not the run's
#: own, and is refused before it is parsed into memory.
MAX_JSON_BYTES = 1 << 20
#: The keys of a flags.json, as `write_config` writes them (a directory of a version before the typed
#: configuration has "options" and "flags" only).
CONFIG_JSON_KEYS = ("config", "options", "flags", "resolved", "mgml_tf_version")


def _read_json(path, advice=""):
    try:
        size = os.path.getsize(path)
        if size > MAX_JSON_BYTES:
            raise RunError(f"{path} is {size} bytes, more than such a file can be ({MAX_JSON_BYTES}){advice}")
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested thousands deep
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise RunError(f"cannot read {path}: {reason}{advice}") from None


def check_saved_config(saved, path, advice=None):
    """Refuses a saved configuration (a ``flags.json``, read from ``path``) that this package would not have
    written, before anything is built from it: one ``RunError`` line naming the file and the key. Checked: a
    JSON object of the keys `CONFIG_JSON_KEYS` ("options" required); each section of "config", the flat
    "options" (with `LEGACY_OPTIONS` for the options it predates) and "flags" by the typed configuration
    (`config.check_json_types` for the types, the sections for names, choices and ranges: an unknown option,
    a string for an integer, ``num_classes=10**9`` or a crop of 10^6 pixels is refused); "resolved" holds
    lists of ``name:root`` strings. ``advice`` replaces what the line tells to do (a preset's record:
    ``mgml_tf.training.preset``)."""

    def refuse(where, problem):
        raise _unreadable(path, f"{where}: {problem}", advice)

    if not isinstance(saved, dict):
        refuse("the file", f"must hold a JSON object, not {type(saved).__name__}")
    unknown = sorted(set(saved) - set(CONFIG_JSON_KEYS))
    if unknown:
        refuse(f"key {unknown[0]!r}", f"unknown; {CONFIG_JSON} holds {', '.join(CONFIG_JSON_KEYS)}")
    if "options" not in saved:
        refuse("key 'options'", "missing")
    owner = {name: section for section in config_lib.SECTIONS.values() for name in section.names()}

    def check_flat(key, values, legacy=False):
        if not isinstance(values, dict):
            refuse(f"key {key!r}", f"must be an object, not {type(values).__name__}")
        for name in sorted(values):
            if name not in owner:
                refuse(f"{key}.{name}", "unknown option")
            try:
                config_lib.check_json_types(owner[name], {name: values[name]})
            except ValueError as e:
                refuse(f"{key}.{name}", e)
        try:
            config_lib.RunConfig.from_flat(config_lib.with_legacy_options(values) if legacy else values)
        except config_lib.ConfigError as e:
            refuse(f"{key}.{e.name}", e)
        except (TypeError, ValueError) as e:
            refuse(f"key {key!r}", e)

    check_flat("options", saved["options"], legacy=True)
    if "flags" in saved:
        check_flat("flags", saved["flags"])
    if "config" in saved:
        sections = saved["config"]
        if not isinstance(sections, dict):
            refuse("key 'config'", f"must be an object, not {type(sections).__name__}")
        for name in sorted(sections):
            if name not in config_lib.SECTIONS:
                refuse(f"config.{name}", f"unknown section; known: {', '.join(config_lib.SECTIONS)}")
            check_flat(f"config.{name}", sections[name])
        try:
            config_lib.RunConfig.from_dict(sections)
        except (TypeError, ValueError) as e:  # across sections (the method needs the memory, ...)
            refuse("key 'config'", e)
    resolved = saved.get("resolved", {})
    if not isinstance(resolved, dict):
        refuse("key 'resolved'", f"must be an object, not {type(resolved).__name__}")
    for role in ("sources", "targets"):
        specs = resolved.get(role, [])
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            refuse(f"resolved.{role}", "must be a list of name:root strings")
    if not isinstance(saved.get("mgml_tf_version", ""), str):
        refuse("key 'mgml_tf_version'", "must be a string")


def write_backbone_architecture(model_dir, model):
    """``backbone.json`` for a keras-hub backbone (``model.backbone_architecture``); nothing for a ResNet."""
    if getattr(model, "backbone_architecture", None) is not None:
        write_json(os.path.join(model_dir, BACKBONE_JSON), model.backbone_architecture)


def saved_backbone_architecture(model_dir):
    """The keras-hub backbone architecture ``model_dir`` was trained with, where a checkpoint holds its
    weights (without one, the preset's weights are what a run starts from), else None."""
    path = os.path.join(model_dir, BACKBONE_JSON)
    if not os.path.exists(path) or latest_checkpoint(model_dir) is None:
        return None
    architecture = _read_json(path, f"; restore the run's own {BACKBONE_JSON}")
    check_backbone_architecture(architecture, path)
    return architecture


#: The largest integer a keras-hub backbone's configuration holds (a width, a depth, an image side): DINOv3's
#: ViT-7B is 4096 wide. A tampered 10^9 would be allocated when the backbone is built.
MAX_ARCHITECTURE_INT = 65536
#: The most parameters a saved backbone may declare (transformer layers of 4 h^2 + 2 h m weights): the
#: largest DINOv3 (ViT-7B) has about 7 billion.
MAX_BACKBONE_PARAMETERS = 10_000_000_000


def check_backbone_architecture(architecture, path, advice=None):
    """Refuses a ``backbone.json`` (read from ``path``) that `write_backbone_architecture` would not have
    written, before anything is deserialised or built from it: one ``RunError`` line naming the file and the
    key. It must be a serialised DINOv2/DINOv3 keras-hub backbone (class, module and registered name), its
    configuration's integers in 0..`MAX_ARCHITECTURE_INT`, and its layers at most `MAX_BACKBONE_PARAMETERS`.
    ``advice`` replaces what the line tells to do (a preset's ``backbone.json``)."""
    from mgml_tf.models.foundation import SUPPORTED

    advice = advice or f"restore the run's own {BACKBONE_JSON}"

    def refuse(where, problem):
        raise RunError(f"{path}: {where}: {problem}; {advice}")

    if not isinstance(architecture, dict):
        refuse("the file", f"must hold a JSON object, not {type(architecture).__name__}")
    kind = architecture.get("class_name")
    if kind not in SUPPORTED:
        refuse("class_name", f"{kind!r} is not a supported backbone ({', '.join(SUPPORTED)})")
    module, registered = architecture.get("module"), architecture.get("registered_name")
    if not (isinstance(module, str) and module.startswith("keras_hub.")):
        refuse("module", f"{module!r} is not a keras_hub module")
    if registered not in (None, f"keras_hub>{kind}"):
        refuse("registered_name", f"{registered!r} is not keras_hub>{kind}")
    config = architecture.get("config")
    if not isinstance(config, dict):
        refuse("config", "must be an object")

    def integers(value, where):
        if isinstance(value, dict):
            for key, item in value.items():
                yield from integers(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from integers(item, f"{where}[{i}]")
        elif isinstance(value, int) and not isinstance(value, bool):
            yield where, value

    for where, value in integers(config, "config"):
        if not 0 <= value <= MAX_ARCHITECTURE_INT:
            refuse(where, f"{value} is outside 0..{MAX_ARCHITECTURE_INT}")
    dtype = config.get("dtype")
    if isinstance(dtype, dict) and not str(dtype.get("class_name", "")).endswith("DTypePolicy"):
        refuse("config.dtype", f"{dtype.get('class_name')!r} is not a Keras dtype policy")
    sizes = {k: config.get(k) for k in ("num_layers", "hidden_dim", "intermediate_dim")}
    if all(isinstance(v, int) for v in sizes.values()):
        layers, hidden, inner = sizes["num_layers"], sizes["hidden_dim"], sizes["intermediate_dim"]
        parameters = layers * (4 * hidden * hidden + 2 * hidden * inner)
        if parameters > MAX_BACKBONE_PARAMETERS:
            refuse(
                "config",
                f"num_layers={layers}, hidden_dim={hidden}, intermediate_dim={inner} make about {parameters:.3g} "
                f"parameters, more than {MAX_BACKBONE_PARAMETERS:.0e}",
            )


def latest_checkpoint(model_dir):
    """Prefix of the newest checkpoint named by ``model_dir/checkpoints/checkpoint``, or None."""
    import tensorflow as tf

    folder = os.path.join(model_dir, "checkpoints")
    return tf.train.latest_checkpoint(folder) if os.path.isdir(folder) else None


def checkpoint_architecture(path):
    """The architecture options a checkpoint's variables reveal (``backbone``, ``head``, ``num_classes``,
    ``feature_channels``, ``use_memory``, ``use_update_network``, ``memory_score_scale``, ``aux_head``), read from
    its variable names and shapes without building a model; ``{}`` if the checkpoint cannot be read."""
    import re

    import tensorflow as tf

    try:
        shapes = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError):
        return {}
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    var = {
        k[len("model/") : -len(suffix)].replace(".S", "/"): tuple(v)
        for k, v in shapes.items()
        if k.startswith("model/") and k.endswith(suffix)
    }
    arch = {}
    blocks = [int(m.group(1)) for m in (re.match(r"conv4_block(\d+)_", k) for k in var) if m]
    if blocks:
        arch["backbone"] = {1: "resnet_small", 6: "resnet50", 23: "resnet101"}.get(max(blocks))
    if any(k.startswith("aspp/") for k in var):
        arch["head"] = "deeplabv3plus"
    elif any(k.startswith("decoder/classifier_rate") for k in var):
        arch["head"] = "deeplabv2"
    classifiers = [v for k, v in var.items() if k.startswith("decoder/classifier") and k.endswith("/kernel")]
    if "memory/memory" in var:
        arch["num_classes"], arch["feature_channels"] = var["memory/memory"]
    elif classifiers:
        arch["num_classes"] = classifiers[0][-1]
    arch["use_memory"] = "memory/memory" in var
    if arch["use_memory"]:
        arch["use_update_network"] = any(k.startswith("update_network/") for k in var)
        arch["memory_score_scale"] = "learned" if "memory_read/log_scale" in var else "fixed"
    arch["aux_head"] = any(k.startswith("aux_head/") for k in var)
    return {k: v for k, v in arch.items() if v is not None}


def checkpoint_differences(path, options):
    """``["name=checkpoint value (checkpoint) vs value (now)", ...]`` for the architecture options in which
    the checkpoint at ``path`` differs from ``options``."""
    found = checkpoint_architecture(path)
    want = resolved_architecture(options)
    return [
        f"{k}={v!r} (checkpoint) vs {want[k]!r} (now)"
        for k, v in found.items()
        if k in want and want[k] is not None and v != want[k]
    ]


def check_compatible(model_dir, options):
    """Refuses a ``model_dir`` whose saved configuration has another architecture, num_classes or method;
    without ``flags.json``, compares the options with what the newest checkpoint's variables reveal."""
    saved = load_config(model_dir)
    if saved is None:
        path = latest_checkpoint(model_dir)
        diffs = checkpoint_differences(path, options) if path else []
        if diffs:
            raise RunError(
                f"--model_dir={model_dir} holds a checkpoint of another configuration (and no "
                f"{CONFIG_JSON}): {'; '.join(diffs)}; use a new --model_dir or matching flags"
            )
        return None
    old = resolved_architecture(saved["options"])
    new = resolved_architecture(options)
    diffs = [f"{k}={old[k]!r} (saved) vs {new[k]!r} (now)" for k in config_lib.ARCHITECTURE_KEYS if old[k] != new[k]]
    if diffs:
        raise RunError(
            f"--model_dir={model_dir} was made with another configuration: {'; '.join(diffs)}; "
            "use a new --model_dir (or the saved flags: --flagfile="
            f"{os.path.join(model_dir, CONFIG_CFG)})"
        )
    return saved


def changed_options(saved, options):
    """Non-architecture options that differ from the saved run (allowed on resume, reported)."""
    if saved is None:
        return {}
    old = saved.get("options", {})
    return {
        k: (old.get(k), v)
        for k, v in options.items()
        if k in old and _norm(old.get(k)) != _norm(v) and k not in config_lib.ARCHITECTURE_KEYS
    }


def _norm(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def json_options(options):
    return {k: _norm(v) for k, v in options.items()}


def write_config(model_dir, config, source_specs, target_specs, given=()):
    """Writes the run's configuration: ``flags.json`` (the typed configuration by section, the same as flat
    flags and ``build_model`` options, the resolved domains and architecture) and ``flags.cfg`` (a flagfile
    that resumes the run). The device section is saved only where ``given``: a resumed run may run elsewhere."""
    import mgml_tf

    options = config.model_options()
    values = {}
    for name, section in config.to_dict().items():
        values.update(section if name != "distribution" else {k: v for k, v in section.items() if k in given})
    saved = {
        "config": config.to_dict(),
        "options": json_options(options),
        "flags": values,
        "resolved": {
            "sources": source_specs,
            "targets": target_specs,
            "architecture": resolved_architecture(options),
        },
        "mgml_tf_version": mgml_tf.__version__,
    }
    os.makedirs(model_dir, exist_ok=True)
    write_json(os.path.join(model_dir, CONFIG_JSON), saved)
    header = ["Resolved flags of this run (python -m mgml_tf.train --flagfile=THIS resumes it)."]
    atomic_write_text(os.path.join(model_dir, CONFIG_CFG), config_lib.to_flagfile(values, header=header))


def saved_model_options(model_dir, config):
    """The ``build_model`` options a model directory was trained with, checked: ``flags.json``'s ``"options"``
    (the model, method and optimiser sections of its configuration, flat), every option a directory written
    before it existed predates at that time's value (``LEGACY_OPTIONS``). Where ``"config"`` (the whole
    configuration by section) is there too, the two must agree."""
    path = os.path.join(model_dir, CONFIG_JSON)
    try:
        if "options" in config:
            flat = config_lib.with_legacy_options(dict(config["options"]))
            options = config_lib.RunConfig.from_flat(flat, strict=False).model_options()
        else:
            options = _sections_options(config["config"])
        return options
    except (KeyError, TypeError, ValueError) as e:
        raise _unreadable(path, e) from None


def check_sections_agree(model_dir, config, options):
    """Where ``flags.json`` holds both ``"options"`` and the ``"config"`` sections, they must agree."""
    if "config" not in config or "options" not in config:
        return
    path = os.path.join(model_dir, CONFIG_JSON)
    try:
        sections = _sections_options(config["config"])
        differ = sorted(k for k in options if _norm(options[k]) != _norm(sections[k]))
        if differ:
            values = ", ".join(f"{k} ({options[k]!r} in options, {sections[k]!r} in config)" for k in differ)
            raise ValueError(f"its options and config sections disagree on {values}")
    except (KeyError, TypeError, ValueError) as e:
        raise _unreadable(path, e) from None


def _unreadable(path, error, advice=None):
    advice = advice or (
        f"restore the run's own {CONFIG_JSON}, or write its options as a flagfile and train into a new --model_dir "
        "with --flagfile"
    )
    return RunError(f"{path} holds a configuration this version cannot read ({error}); {advice}")


def _sections_options(sections):
    model_sections = {k: v for k, v in sections.items() if k in config_lib.MODEL_SECTIONS}
    return config_lib.RunConfig.from_dict(model_sections).model_options()


def build_from_dir(model_dir, log=print, restore=True):
    """``(model, config, checkpoint_path)``: the model rebuilt from ``flags.json``, newest checkpoint restored."""
    import mgml_tf
    from mgml_tf.training import checkpoints

    if not os.path.isdir(model_dir):
        raise RunError(f"--model_dir={model_dir} not found")
    config = load_config(model_dir)
    if config is None:
        raise RunError(f"{model_dir} has no {CONFIG_JSON}: not a model_dir written by mgml_tf.train")
    options = saved_model_options(model_dir, config)
    newest = latest_checkpoint(model_dir) if restore else None
    diffs = checkpoint_differences(newest, options) if newest else []
    if diffs:
        raise RunError(
            f"{os.path.join(model_dir, CONFIG_JSON)} does not match the checkpoint {newest}: "
            f"{'; '.join(diffs).replace('(now)', '(flags.json)')}; restore the run's own "
            f"{CONFIG_JSON} or use the model_dir it came from"
        )
    check_sections_agree(model_dir, config, options)
    try:
        model = mgml_tf.build_model(**options, backbone_architecture=saved_backbone_architecture(model_dir))
    except (TypeError, ValueError) as e:
        raise RunError(
            f"{os.path.join(model_dir, CONFIG_JSON)} holds options build_model refuses ({e}); "
            f"restore the run's own {CONFIG_JSON}, or write its options as a flagfile and train into a new "
            "--model_dir with --flagfile"
        ) from None
    checkpoint = checkpoints.checkpoint_object(model)
    ckpt_manager = checkpoints.manager(checkpoint, model_dir, keep=None)
    path = checkpoints.restore_latest(model, checkpoint, ckpt_manager, log=log) if restore else None
    if restore and path is None:
        raise RunError(f"no checkpoint in {os.path.join(model_dir, 'checkpoints')}: train first")
    return model, config, path
