"""Flag definitions shared by the command-line tools, and their validation.

Every option of ``mgml_tf.build_model`` is a flag of the same name, defined here by walking the defaults
dicts (``MODEL_DEFAULTS``, ``TRAINING_DEFAULTS``, ``OPTIMIZER_DEFAULTS``), so flag names cannot drift from
option names. ``validate_*`` check every value before any work and raise ``UsageError`` (one line).
"""

import math
import os
import tempfile

from absl import flags

from mgml_tf.synthetic import families as synthetic_families
from mgml_tf.training.cli import UsageError, check_writable

# Options whose values come from a fixed set (checked again by the model; listed here for --help).
_HELP = {
    "backbone": "Backbone network.",
    "head": "Segmentation head: deeplabv3plus (Tables 1-3) or deeplabv2 (Table 4).",
    "num_classes": "Number of classes (19 Cityscapes train ids).",
    "output_stride": "Backbone output stride (default: 16 for deeplabv3plus, 8 for deeplabv2).",
    "backbone_weights": "Backbone weights: 'imagenet' (needs network) or a .keras/.weights.h5 file; empty: random.",
    "feature_channels": "Channels C of the encoder features F and of the memory rows.",
    "decoder_channels": "Channels of the DeepLabV3+ decoder and the aux head.",
    "low_level_channels": "Channels of the DeepLabV3+ low-level projection.",
    "aspp_rates": "ASPP atrous rates at output stride 16 (doubled at 8).",
    "aux_head": "Auxiliary FCN head on conv4_x (loss weight aux_weight).",
    "dropout": "Dropout rate in ASPP and the aux head, in [0, 1).",
    "bn_momentum": "BatchNorm moving-average momentum, in [0, 1).",
    "bn_epsilon": "BatchNorm epsilon of the heads, the update network and the read block (1e-5: PyTorch's, the "
    "reference's; 1e-3: Keras's, mgml_tf before this flag). The backbone keeps 1.001e-5.",
    "synchronized_bn": "Synchronised BatchNorm (multi-replica training).",
    "use_memory": "Use the categorical memory (forced off by method=baseline/mldg).",
    "use_update_network": "Use the memory update network U (Table 9).",
    "memory_momentum": "Memory update momentum m of eq. 2, in [0, 1).",
    "memory_temperature": "Memory softmax temperature T, > 0 (1: the paper, which has none); where it acts: "
    "--memory_temperature_on.",
    "memory_temperature_on": "cohesion: T divides the cohesion-loss logits only (the reference); read: the read "
    "softmax of eq. 4 only (mgml_tf before this flag); both.",
    "memory_score_scale": "fixed: the read and cohesion logits are the cosine scores (divided by T as "
    "--memory_temperature_on says; the paper). learned: both are s * scores with one "
    "trainable s = exp(log_s), initialised at 1/T, at most 100 (beyond the paper; "
    "--memory_temperature_on is then ignored).",
    "memory_centering": "none: the read's cosines of eq. 4 (the paper). mean_row: cosines after subtracting the "
    "mean memory row from the rows and the normalised query, re-normalised (beyond the paper; "
    "the memory and its update unchanged).",
    "update_network_input": "What the update network U reads: normalized: normalize(F) (the paper, Sec. 3.2); "
    "raw: F (the reference).",
    "method": "mgml (Algorithm 1), baseline (aggregated sources), mldg (meta-learning without memory), "
    "memory_agg (memory on aggregated sources).",
    "meta_order": "2: second-order meta-gradient (the paper); 1: first order (the reference code); "
    "0: episodic, no inner step (Table 7).",
    "outer_objective": "mldg: J = L_in + L_out (reference); meta_test_only: J = L_out (eq. 11).",
    "inner_lr_ratio": "Inner learning rate alpha as a fraction of the outer rate beta (1/4 in the paper).",
    "memory_read": "softmax (default) or gumbel (training only, the reference's read).",
    "memory_prime_freeze": "Parameters frozen when writing M' (eq. 10; Table 6).",
    "meta_test_memory": "Memory the meta-test step reads: m_prime (eq. 10, re-written with the fast weights) "
    "or m_hat (written with theta in the meta-train step; Table 6's first row).",
    "bn_statistics_from": "Passes whose batches update the BatchNorm moving statistics: meta_train (the meta-train "
    "pass only, as the reference) or every_pass (also M' and the meta-test pass: mgml_tf "
    "before this flag). One pass either way for baseline and memory_agg.",
    "use_cohesion": "Feature cohesion loss (eq. 6; Table 5).",
    "use_divergence": "Memory divergence loss (eq. 7; Table 5).",
    "seg_weight": "Weight of the segmentation loss.",
    "aux_weight": "Weight of the auxiliary loss (0.4).",
    "cohesion_weight": "Weight lambda_1 of the cohesion loss (0.02).",
    "divergence_classification_weight": "Weight of the memory classification term of L_div (0.2).",
    "divergence_cosine_weight": "Weight of the memory cosine term of L_div (0.4 in the reference).",
    "weight_decay": "L2 weight decay added to the gradients (5e-4).",
    "ignore_index": "Label value ignored by losses and metrics.",
    "seed": "Seed of the initialisation, the episodes (domain splits, files, augmentation) and Gumbel noise.",
    "learning_rate": "Outer learning rate beta (1e-2).",
    "lr_schedule": "exponential (lr * exp(-9 t / 120000), the reference), poly (power 0.9 over "
    "train_steps) or constant.",
    "train_steps": "Number of training steps (iterations).",
    "optimizer_momentum": "SGD momentum, in [0, 1).",
}

#: Options that fix the architecture or the method: a model_dir made with other values is refused.
ARCHITECTURE_KEYS = (
    "backbone",
    "head",
    "num_classes",
    "output_stride",
    "feature_channels",
    "decoder_channels",
    "low_level_channels",
    "aspp_rates",
    "aux_head",
    "use_memory",
    "use_update_network",
    "method",
    "memory_score_scale",
)


def option_defaults():
    """``{name: default}`` of every ``build_model`` option (network, Algorithm 1, optimiser)."""
    from mgml_tf.models.builder import OPTIMIZER_DEFAULTS
    from mgml_tf.models.meta_learning import TRAINING_DEFAULTS
    from mgml_tf.models.segmenter import MODEL_DEFAULTS

    return {**MODEL_DEFAULTS, **TRAINING_DEFAULTS, **OPTIMIZER_DEFAULTS}


def _choices():
    from mgml_tf import optim
    from mgml_tf.models import backbones, meta_learning, segmenter

    return {
        "backbone": backbones.BACKBONES,
        "head": segmenter.HEADS,
        "method": meta_learning.METHODS,
        "outer_objective": meta_learning.OUTER_OBJECTIVES,
        "memory_read": meta_learning.MEMORY_READS,
        "memory_prime_freeze": meta_learning.MEMORY_PRIME_FREEZES,
        "meta_test_memory": meta_learning.META_TEST_MEMORIES,
        "lr_schedule": optim.SCHEDULES,
        "bn_statistics_from": meta_learning.BN_STATISTICS_SOURCES,
        "memory_temperature_on": segmenter.MEMORY_TEMPERATURE_ON,
        "update_network_input": segmenter.UPDATE_NETWORK_INPUTS,
        "memory_score_scale": segmenter.MEMORY_SCORE_SCALES,
        "memory_centering": segmenter.MEMORY_CENTERINGS,
    }


def define_model_flags(fv):
    """One flag per ``build_model`` option, typed by its default."""
    choices = _choices()
    for name, default in option_defaults().items():
        text = _HELP.get(name, f"build_model option {name}.")
        if name in choices:
            flags.DEFINE_enum(name, default, list(choices[name]), text, flag_values=fv)
        elif isinstance(default, bool):
            flags.DEFINE_boolean(name, default, text, flag_values=fv)
        elif isinstance(default, int) or name == "output_stride":
            flags.DEFINE_integer(name, default, text, flag_values=fv)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, text, flag_values=fv)
        elif isinstance(default, (tuple, list)):
            flags.DEFINE_list(name, [str(v) for v in default], text, flag_values=fv)
        else:
            flags.DEFINE_string(name, default, text, flag_values=fv)


def define_eval_flags(fv, with_targets=True):
    if with_targets:
        flags.DEFINE_string(
            "targets",
            None,
            "Target domains to evaluate: name:root comma list, or 'synthetic' "
            "(the embedded default targets), 'synthetic:in_domain' (the held-out images of "
            "the synthetic source styles, see --synthetic_num_source_val).",
            flag_values=fv,
        )
    flags.DEFINE_boolean("sliding_window", False, "Sliding-window inference instead of whole images.", flag_values=fv)
    flags.DEFINE_list("window_size", ["512", "1024"], "Sliding window height,width (or one size).", flag_values=fv)
    flags.DEFINE_float("window_overlap", 1.0 / 3.0, "Sliding window overlap fraction, in [0, 1).", flag_values=fv)
    flags.DEFINE_boolean("flip", False, "Average the prediction with that of the mirrored image.", flag_values=fv)
    flags.DEFINE_enum(
        "num_classes_protocol",
        "19",
        ["19", "16"],
        "mIoU over 19 classes, or the 16 classes shared with SYNTHIA (Table 4: terrain, truck, train dropped).",
        flag_values=fv,
    )
    flags.DEFINE_integer("max_eval_images", 0, "Evaluate at most this many images per target (0: all).", flag_values=fv)


#: --synthetic_family values: the family's name -> its module (the registry in mgml_tf.synthetic.families).
SYNTHETIC_FAMILIES = synthetic_families.FAMILIES


def define_synthetic_flags(fv):
    flags.DEFINE_string(
        "synthetic_root",
        os.path.join(tempfile.gettempdir(), "mgml_tf_synthetic"),
        "Where the embedded default domains are generated when --sources/--targets "
        "say 'synthetic' (generated once, reused afterwards).",
        flag_values=fv,
    )
    flags.DEFINE_integer("synthetic_num_train", 200, "Images per synthetic source domain.", flag_values=fv)
    flags.DEFINE_integer("synthetic_num_val", 50, "Images per synthetic target domain.", flag_values=fv)
    flags.DEFINE_integer("synthetic_height", 256, "Height of the synthetic images.", flag_values=fv)
    flags.DEFINE_integer("synthetic_width", 512, "Width of the synthetic images.", flag_values=fv)
    flags.DEFINE_string(
        "synthetic_family",
        "streets",
        "Generator that 'synthetic' expands to: streets "
        "(mgml_tf.synthetic.streets) or towns (mgml_tf.synthetic.towns, a second family "
        "sharing no scene code, style or palette with it).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "synthetic_num_source_val",
        0,
        "Held-out images per synthetic source style (a seed "
        "stream disjoint from the training images), under <root>/<style>_val; "
        "--targets=synthetic:in_domain evaluates on them.",
        flag_values=fv,
    )


def define_train_flags(fv):
    flags.DEFINE_string(
        "model_dir",
        None,
        "Run directory: checkpoints, TensorBoard events, flags, "
        "evaluation results. Training resumes from the newest checkpoint in it.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "sources",
        None,
        "Source domains: name:root comma list (e.g. gtav:/data/GTAV,synthia:/data/SYNTHIA), or 'synthetic'.",
        flag_values=fv,
    )
    flags.DEFINE_integer("batch_per_domain", 4, "Images of every source domain per step.", flag_values=fv)
    flags.DEFINE_list("crop_size", ["768"], "Training crop: size or height,width.", flag_values=fv)
    flags.DEFINE_integer("checkpoint_every", 1000, "Write a checkpoint every N steps (and at the end).", flag_values=fv)
    flags.DEFINE_integer("keep_checkpoints", 5, "Keep the newest K checkpoints.", flag_values=fv)
    flags.DEFINE_integer("eval_every", 0, "Evaluate on the targets every N steps (0: only at the end).", flag_values=fv)
    flags.DEFINE_integer("log_every", 50, "Print a progress line and write summaries every N steps.", flag_values=fv)
    flags.DEFINE_integer(
        "memory_init_batches",
        100,
        "Source batches used to initialise the memory (fresh runs only; 0: keep the random initial memory).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "memory_rewrite_every",
        0,
        "Rewrite the memory as the class means of the current "
        "encoder's features (as at the start, from --memory_init_batches batches) every N "
        "steps; 0: never (the paper: written once from the untrained encoder, then only by "
        "the update network).",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "deterministic",
        False,
        "Reproducible run: deterministic kernels "
        "(tf.config.experimental.enable_op_determinism), deterministic input pipeline order, "
        "every seed from --seed; two runs give bit-identical losses and weights on CPU. On GPU "
        "slower, and ops without a deterministic GPU kernel raise (docs/RELIABILITY.md).",
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "nonfinite",
        "stop",
        ["stop", "skip"],
        "A step whose loss or gradients are NaN/Inf is "
        "never applied; stop: end the run with a one-line error naming the step; skip: go on "
        "and count it (see --max_nonfinite_steps).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "max_nonfinite_steps",
        10,
        "With --nonfinite=skip: stop once more than this many steps of one run were skipped.",
        flag_values=fv,
    )
    flags.DEFINE_integer("summary_images", 2, "Images written to TensorBoard at each evaluation.", flag_values=fv)
    define_synthetic_flags(fv)
    define_eval_flags(fv)


def define_distribution_flags(fv):
    """--distribution_strategy, --num_devices, --mixed_precision, --jit_compile (docs/DISTRIBUTED.md)."""
    flags.DEFINE_string(
        "distribution_strategy",
        "auto",
        "auto (mirrored over the GPUs when there are several, "
        "else one device) | one_device | mirrored | multi_worker (TF_CONFIG).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "num_devices",
        None,
        "Replicas of a mirrored run: GPUs, or on a machine without GPUs "
        "the number of logical CPU devices the CPU is split into (default: all GPUs / 1).",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "mixed_precision",
        "none",
        "none | mixed_float16 (loss-scaled, also the inner step) | "
        "mixed_bfloat16; the memory, losses and cosine scores stay float32.",
        flag_values=fv,
    )
    flags.DEFINE_boolean("jit_compile", False, "Compile the train step with XLA (one device only).", flag_values=fv)
    flags.DEFINE_string(
        "debug_dump_variables",
        None,
        "(testing) At the end, every task writes its final model variables to PREFIX.<task>.npz.",
        flag_values=fv,
    )


def validate_distribution_flags(fv):
    """Strategy, devices, precision, XLA and the batch split, before any work; returns the replica count.

    Reads ``TF_CONFIG`` for ``multi_worker``; counts GPUs without initialising TensorFlow's devices."""
    from mgml_tf import distribution

    name = fv.distribution_strategy
    _need(
        name in distribution.STRATEGIES,
        f"--distribution_strategy={name!r} is unknown; valid: {', '.join(distribution.STRATEGIES)}",
    )
    _need(
        fv.mixed_precision in distribution.PRECISIONS,
        f"--mixed_precision={fv.mixed_precision!r} is unknown; valid: {', '.join(distribution.PRECISIONS)}",
    )
    n = fv.num_devices
    _need(n is None or n >= 1, f"--num_devices must be a positive integer, got {n}")
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
        and fv.meta_order == 2
        and fv.method in ("mgml", "mldg")
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


def model_options(fv):
    """``build_model`` keyword arguments from parsed flags."""
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


def validate_model_options(opts):
    """Range checks of the ``build_model`` options (the model checks them again)."""
    lr = opts["learning_rate"]
    _need(
        isinstance(lr, float) and math.isfinite(lr) and lr > 0, f"--learning_rate must be a positive number, got {lr}"
    )
    for key in ("optimizer_momentum", "memory_momentum", "bn_momentum", "dropout"):
        v = opts[key]
        _need(math.isfinite(v) and 0.0 <= v < 1.0, f"--{key} must be in [0, 1), got {v}")
    _need(opts["num_classes"] >= 2, f"--num_classes must be at least 2, got {opts['num_classes']}")
    _need(
        opts["output_stride"] in (None, 8, 16, 32), f"--output_stride must be 8, 16 or 32, got {opts['output_stride']}"
    )
    for key in ("feature_channels", "decoder_channels", "low_level_channels", "train_steps"):
        _need(opts[key] >= 1, f"--{key} must be a positive integer, got {opts[key]}")
    _need(
        all(r >= 1 for r in opts["aspp_rates"]) and len(opts["aspp_rates"]) >= 1,
        f"--aspp_rates must be positive integers, got {list(opts['aspp_rates'])}",
    )
    _need(
        opts["memory_temperature"] > 0 and math.isfinite(opts["memory_temperature"]),
        f"--memory_temperature must be positive, got {opts['memory_temperature']}",
    )
    _need(
        opts["bn_epsilon"] > 0 and math.isfinite(opts["bn_epsilon"]),
        f"--bn_epsilon must be positive, got {opts['bn_epsilon']}",
    )
    _need(opts["meta_order"] in (0, 1, 2), f"--meta_order must be 0, 1 or 2, got {opts['meta_order']}")
    for key in (
        "inner_lr_ratio",
        "seg_weight",
        "aux_weight",
        "cohesion_weight",
        "divergence_classification_weight",
        "divergence_cosine_weight",
        "weight_decay",
    ):
        _need(math.isfinite(opts[key]) and opts[key] >= 0, f"--{key} must be a non-negative number, got {opts[key]}")
    _need(
        0 <= opts["ignore_index"] <= 255 and opts["ignore_index"] >= opts["num_classes"],
        f"--ignore_index must be in [num_classes, 255], got {opts['ignore_index']}",
    )
    _need(opts["seed"] >= 0, f"--seed must be non-negative, got {opts['seed']}")
    if opts["method"] in ("mgml", "memory_agg") and not opts["use_memory"]:
        raise UsageError(
            f"--method={opts['method']} needs the memory; drop --nouse_memory or use --method=baseline or --method=mldg"
        )


def validate_eval_flags(fv):
    sizes = _ints("window_size", fv.window_size, count=(1, 2))
    _need(all(s >= 32 for s in sizes), f"--window_size must be at least 32, got {fv.window_size}")
    _need(0.0 <= fv.window_overlap < 1.0, f"--window_overlap must be in [0, 1), got {fv.window_overlap}")
    _need(fv.max_eval_images >= 0, f"--max_eval_images must be >= 0, got {fv.max_eval_images}")


def validate_synthetic_flags(fv):
    for key in ("synthetic_num_train", "synthetic_num_val"):
        _need(fv[key].value >= 1, f"--{key} must be positive, got {fv[key].value}")
    for key in ("synthetic_height", "synthetic_width"):
        _need(fv[key].value >= 32, f"--{key} must be at least 32, got {fv[key].value}")
    _need(bool(fv.synthetic_root), "--synthetic_root must not be empty")
    _need(
        fv.synthetic_family in SYNTHETIC_FAMILIES,
        f"--synthetic_family={fv.synthetic_family!r} is unknown; valid: {', '.join(SYNTHETIC_FAMILIES)}",
    )
    _need(
        fv.synthetic_num_source_val >= 0, f"--synthetic_num_source_val must be >= 0, got {fv.synthetic_num_source_val}"
    )


def validate_train_flags(fv):
    """Every training flag value, before any work; returns the ``build_model`` options."""
    _need(bool(fv.model_dir), "--model_dir is required")
    check_writable("model_dir", fv.model_dir)
    _need(bool(fv.sources), "--sources is required (name:root comma list, or synthetic)")
    opts = model_options(fv)
    validate_model_options(opts)
    crop = _ints("crop_size", fv.crop_size, count=(1, 2))
    _need(all(c >= 1 for c in crop), f"--crop_size must be positive, got {','.join(fv.crop_size)}")
    _need(all(c >= 32 for c in crop), f"--crop_size must be at least 32 pixels, got {','.join(fv.crop_size)}")
    for key in ("batch_per_domain", "checkpoint_every", "keep_checkpoints", "log_every"):
        _need(fv[key].value >= 1, f"--{key} must be a positive integer, got {fv[key].value}")
    for key in ("eval_every", "memory_init_batches", "memory_rewrite_every", "summary_images", "max_nonfinite_steps"):
        _need(fv[key].value >= 0, f"--{key} must be >= 0, got {fv[key].value}")
    validate_eval_flags(fv)
    validate_synthetic_flags(fv)
    return opts


def crop_size(fv):
    crop = [int(c) for c in fv.crop_size]
    return (crop[0], crop[0]) if len(crop) == 1 else tuple(crop)


def window_size(fv):
    w = [int(c) for c in fv.window_size]
    return (w[0], w[0]) if len(w) == 1 else tuple(w)


def flag_dict(fv, names):
    """``{name: value}`` (JSON-ready) of the named flags."""
    out = {}
    for name in names:
        value = fv[name].value
        out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def to_flagfile(values, header=()):
    """Flagfile text (``--name=value`` lines) for ``{name: value}``; None values are left out."""
    lines = [f"# {h}" for h in header]
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"--{name}={','.join(str(v) for v in value)}")
        else:
            lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"
