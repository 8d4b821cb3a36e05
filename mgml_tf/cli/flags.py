"""Flag definitions shared by the command-line tools, and their validation.

Every field of the configuration sections (``mgml_tf.config``) is a flag of the same name, generated here
from the fields (help, type, choices), so flag names cannot drift from option names. ``config_from_flags``
builds the run's ``RunConfig`` from the parsed flags; the sections check every value once, before any work,
and a bad one is a ``UsageError`` (one line).
"""

import dataclasses

from absl import flags

from mgml_tf import config as config_lib
from mgml_tf.cli.common import check_writable
from mgml_tf.errors import UsageError
from mgml_tf.methods import METHODS
from mgml_tf.synthetic import families as synthetic_families


def define_section_flags(fv, section, names=None):
    """One flag per field of a ``mgml_tf.config`` section (or of ``names`` among them): its name, default and
    help; typed by the field (an enum where the field has choices, unless it is ``free_text``)."""
    for field in dataclasses.fields(section):
        if names is not None and field.name not in names:
            continue
        name, default, meta = field.name, field.default, field.metadata
        kind, text, choices = config_lib.field_type(section, name), meta["help"], meta.get("choices")
        if choices is not None and kind is str and not meta.get("free_text"):
            flags.DEFINE_enum(name, default, list(choices), text, flag_values=fv)
        elif kind is bool:
            flags.DEFINE_boolean(name, default, text, flag_values=fv)
        elif kind is int:
            flags.DEFINE_integer(name, default, text, flag_values=fv)
        elif kind is float:
            flags.DEFINE_float(name, default, text, flag_values=fv)
        elif kind is tuple:
            flags.DEFINE_list(name, [str(v) for v in default], text, flag_values=fv)
        else:
            flags.DEFINE_string(name, default, text, flag_values=fv)


def option_defaults():
    """``{name: default}`` of every ``build_model`` option (network, method, optimiser)."""
    return {k: v for name in config_lib.MODEL_SECTIONS for k, v in config_lib.SECTIONS[name]().items()}


def define_model_flags(fv):
    """One flag per ``build_model`` option (the model, method and optimiser sections)."""
    for name in config_lib.MODEL_SECTIONS:
        define_section_flags(fv, config_lib.SECTIONS[name])


def define_eval_flags(fv, with_targets=True):
    names = [n for n in config_lib.EvaluationConfig.names() if with_targets or n != "targets"]
    define_section_flags(fv, config_lib.EvaluationConfig, names)


#: --synthetic_family values: the family's name -> its module (the registry in mgml_tf.synthetic.families).
SYNTHETIC_FAMILIES = synthetic_families.FAMILIES


def define_synthetic_flags(fv):
    define_section_flags(fv, config_lib.SyntheticConfig)


def define_train_flags(fv):
    define_section_flags(fv, config_lib.TrainingConfig)
    define_synthetic_flags(fv)
    define_eval_flags(fv)


def define_distribution_flags(fv):
    """--distribution_strategy, --num_devices, --mixed_precision, --jit_compile (docs/DISTRIBUTED.md)."""
    define_section_flags(fv, config_lib.DistributionConfig)


def validate_distribution_flags(fv):
    """Strategy, devices, precision, XLA and the batch split, before any work; returns the replica count.

    Reads ``TF_CONFIG`` for ``multi_worker``; counts GPUs without initialising TensorFlow's devices."""
    from mgml_tf import distribution

    section_from_flags(fv, config_lib.DistributionConfig)  # the strategy's and the precision's names
    name = fv.distribution_strategy
    n = fv.num_devices
    _need(
        not (name == "one_device" and n is not None and n > 1),
        f"--num_devices={n} needs --distribution_strategy=mirrored (one_device runs one replica)",
    )
    try:
        replicas = distribution.expected_replicas(name, n)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if fv.jit_compile and (replicas > 1 or name in ("multi_worker", "mirrored")):
        raise UsageError(
            f"--jit_compile works on one device only: XLA compilation of the step fails under a "
            f"multi-replica strategy ({name}, {replicas} replicas); drop --jit_compile or use "
            "--distribution_strategy=one_device"
        )
    if (
        fv.jit_compile
        and fv.mixed_precision != "none"
        and fv.meta_order in (None, 2)  # None: 2 for the ResNets (the flags cannot know a preset's size)
        and METHODS[fv.method].meta_learns
        and not _has_gpu()
    ):
        raise UsageError(
            f"--jit_compile with --mixed_precision={fv.mixed_precision} fails on CPU for the "
            "second-order step (XLA's CPU backend has no MaxPoolGradGrad kernel for 16-bit floats); "
            "drop one of them or use --meta_order=1"
        )
    b = fv.batch_per_domain
    if b % replicas:
        raise UsageError(
            f"--batch_per_domain={b} does not divide over {replicas} replicas (each replica needs "
            f"an equal share of every domain); set --batch_per_domain to a multiple of {replicas}"
        )
    return replicas


def _has_gpu():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def section_from_flags(fv, section):
    """The ``mgml_tf.config`` section of the parsed flags (lists to integers, an empty optional string to None);
    a bad value is one ``UsageError`` line naming its flag."""
    values = {}
    for field in dataclasses.fields(section):
        if field.name not in fv:
            continue
        value = fv[field.name].value
        kind = config_lib.field_type(section, field.name)
        if kind is tuple:
            value = tuple(_ints(field.name, value))
        elif kind is str and field.default is None and not value:
            value = None
        values[field.name] = value
    try:
        return section.from_dict(values)
    except config_lib.ConfigError as e:
        raise UsageError(e.for_command_line()) from None


def model_options(fv):
    """``build_model`` keyword arguments from parsed flags (not checked: ``validate_model_options``)."""
    out = {}
    for name, default in option_defaults().items():
        value = fv[name].value
        if isinstance(default, (tuple, list)):
            value = tuple(int(v) for v in value)
        if name == "backbone_weights" and not value:
            value = None
        out[name] = value
    return out


def _ints(name, values, count=None):
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise UsageError(f"--{name} must be integers, got {','.join(map(str, values))}") from None
    if count is not None and len(out) not in count:
        raise UsageError(f"--{name} takes {' or '.join(map(str, count))} value(s), got {len(out)}")
    return out


def _need(cond, message):
    if not cond:
        raise UsageError(message)


def _checked(build):
    try:
        return build()
    except config_lib.ConfigError as e:
        raise UsageError(e.for_command_line()) from None


def validate_model_options(opts):
    """The model, method and optimiser sections of ``build_model`` options, checked (one ``UsageError`` line)."""
    return _checked(lambda: config_lib.RunConfig.from_flat(opts))


def validate_eval_flags(fv):
    return section_from_flags(fv, config_lib.EvaluationConfig)


def validate_synthetic_flags(fv):
    return section_from_flags(fv, config_lib.SyntheticConfig)


def config_from_flags(fv):
    """The ``RunConfig`` of parsed flags: every section present in ``fv``, each value checked once."""
    sections = {
        name: section_from_flags(fv, section)
        for name, section in config_lib.SECTIONS.items()
        if any(n in fv for n in section.names())
    }
    return _checked(lambda: config_lib.RunConfig(**sections))


def validate_train_flags(fv, check_backbone=True):
    """Every training flag value, before any work; returns the run's ``RunConfig``. ``check_backbone=False`` leaves
    a keras-hub ``--backbone`` unchecked: a preset carries its architecture, the name is only a record."""
    _need(bool(fv.model_dir), "--model_dir is required")
    check_writable("model_dir", fv.model_dir)
    _need(bool(fv.sources), "--sources is required (name:root comma list, or synthetic)")
    config = config_from_flags(fv)
    if not check_backbone:
        return config
    from mgml_tf.models import foundation  # a keras-hub preset checked before any download or data

    try:
        foundation.check_backbone_spec(config.model.backbone)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return config
