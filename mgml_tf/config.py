"""One typed configuration of a run: the network, the method, the optimiser, training, evaluation, data, devices.

Each section is a frozen dataclass whose field names are the command-line flag names (``--meta_order`` is
``MethodConfig.meta_order``) and, for the first three, the keyword arguments of ``mgml_tf.build_model``. The
command line is generated from the fields (``mgml_tf.cli.flags``: help, type and choices come from here), and
every value is checked once, here, when a section is built: a bad value raises ``ConfigError``, one line
naming the option (the command line prints it as ``--option``).

Pure Python, no TensorFlow: the command line checks a whole configuration before TensorFlow starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mgml_tf.methods import METHODS
from mgml_tf.synthetic.families import FAMILIES

# ------------------------------------------------------------------------------------ choices
BACKBONES = ("resnet50", "resnet101", "resnet_small")
# What of a keras-hub backbone trains (mgml_tf.models.foundation): all, nothing, LoRA updates, a token adapter.
BACKBONE_TUNINGS = ("full", "frozen", "lora", "adapter")
HEADS = ("deeplabv3plus", "deeplabv2")
OUTPUT_STRIDES = (8, 16, 32)
# Where memory_temperature T acts (the paper has no temperature: eqs. 4 and 6 read at T = 1): cohesion: the
# cohesion-loss logits scores / T only, the read softmax at 1 (the reference code); read: the read softmax only
# (mgml_tf before the option); both.
MEMORY_TEMPERATURE_ON = ("cohesion", "read", "both")
# The factor of the cosine scores in the read and cohesion logits: fixed (1 or 1 / T, the paper) or one learned
# s = exp(log_s) (beyond the paper: mgml_tf.memory docstring).
MEMORY_SCORE_SCALES = ("fixed", "learned")
# none: the cosines of eq. 4; mean_row: cosines after removing the mean memory row (beyond the paper).
MEMORY_CENTERINGS = ("none", "mean_row")
# What the update network U reads: normalized: normalize(F) (the paper, Sec. 3.2); raw: F (the reference code).
UPDATE_NETWORK_INPUTS = ("normalized", "raw")
DEFAULT_OUTPUT_STRIDE = {"deeplabv3plus": 16, "deeplabv2": 8}

METHOD_NAMES = tuple(METHODS)
META_ORDERS = (0, 1, 2)
OUTER_OBJECTIVES = ("mldg", "meta_test_only")
MEMORY_READS = ("softmax", "gumbel")
MEMORY_PRIME_FREEZES = ("encoder", "none", "encoder_and_update")
# Memory read in the meta-test step (Table 6): M' re-written with the fast weights (eq. 10, the paper), or the
# M_hat the meta-train step wrote with theta (Table 6's first row: no re-update).
META_TEST_MEMORIES = ("m_prime", "m_hat")
# Passes whose batches update the BatchNorm moving statistics (mgml_tf.models.meta_learning docstring).
BN_STATISTICS_SOURCES = ("meta_train", "every_pass")
SCHEDULES = ("exponential", "poly", "constant")
NONFINITE_POLICIES = ("stop", "skip")
PROTOCOLS = ("19", "16")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
SYNTHETIC_FAMILIES = tuple(FAMILIES)

#: The largest image, in pixels (width x height), that is decoded: the loaders, the data checker and predict
#: refuse a PNG or JPEG whose header declares more before decoding it (a few bytes can declare 10^10 pixels,
#: which the decoder would allocate), and the image-size options (crop, window, resize, synthetic size) are
#: checked against it. 100 megapixels decode to 300 MB of RGB (1.2 GB as the float32 the network reads); the
#: datasets' images (Cityscapes: 2 megapixels) and phone photos fit many times over. ``MGML_TF_MAX_IMAGE_PIXELS``
#: overrides it.
MAX_IMAGE_PIXELS = 100_000_000
MAX_IMAGE_PIXELS_VARIABLE = "MGML_TF_MAX_IMAGE_PIXELS"
#: The most channels (or ranks, or tokens) a layer of the network may have: a width of 10^9 in a tampered
#: configuration would be allocated when the model is built. ResNet-50's widest layer has 2048.
MAX_WIDTH = 4096
#: The most classes: labels are 8-bit PNGs whose value 255 is the ignore id.
MAX_CLASSES = 255


def max_image_pixels() -> int:
    """``MAX_IMAGE_PIXELS``, or ``MGML_TF_MAX_IMAGE_PIXELS`` when set; a bad value raises ``ValueError`` (one line)."""
    text = os.environ.get(MAX_IMAGE_PIXELS_VARIABLE, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"{MAX_IMAGE_PIXELS_VARIABLE}={text!r} is not a positive number of pixels; unset it (default "
            f"{MAX_IMAGE_PIXELS}) or give e.g. {MAX_IMAGE_PIXELS_VARIABLE}=200000000"
        )
    return value


class ConfigError(ValueError):
    """A configuration value out of range: one line. ``str()`` names the option as in Python
    (``memory_momentum must be ...``); ``for_command_line()`` as a flag (``--memory_momentum must be ...``)."""

    def __init__(self, name: str, template: str, command_line: str | None = None):
        self.name, self.template, self.command_line = name, template, command_line
        super().__init__(template.format(name=name))

    def for_command_line(self) -> str:
        return self.command_line or self.template.format(name=f"--{self.name}")


# ------------------------------------------------------------------------------------- checks
# A check returns None for a good value, else a message template with ``{name}`` for the option's name.
Check = Callable[[Any], "str | None"]


def _finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive_int(v):
    return None if v >= 1 else f"{{name}} must be a positive integer, got {v}"


def at_least(n: int) -> Check:
    return lambda v: None if v >= n else f"{{name}} must be at least {n}, got {v}"


def between(low: int, high: int, why: str = "") -> Check:
    """``low <= v <= high``; the message says the bound that is crossed (and ``why`` for the upper one)."""

    def check(v):
        if v < low:
            return f"{{name}} must be at least {low}, got {v}"
        return None if v <= high else f"{{name}} must be at most {high}{why}, got {v}"

    return check


#: A number of channels, a rank or a token count.
width = between(1, MAX_WIDTH)


def non_negative_int(v):
    return None if v >= 0 else f"{{name}} must be >= 0, got {v}"


def non_negative(v):
    return None if _finite(v) and v >= 0 else f"{{name}} must be a non-negative number, got {v}"


def positive(v):
    return None if _finite(v) and v > 0 else f"{{name}} must be positive, got {v}"


def positive_number(v):
    return None if _finite(v) and v > 0 else f"{{name}} must be a positive number, got {v}"


def unit_interval(v):
    return None if _finite(v) and 0.0 <= v < 1.0 else f"{{name}} must be in [0, 1), got {v}"


def sizes(minimum: int) -> Check:
    """One size or ``(height, width)``, each at least ``minimum`` pixels."""

    def check(v):
        if len(v) not in (1, 2):
            return f"{{name}} takes 1 or 2 value(s), got {len(v)}"
        if not all(s >= minimum for s in v):
            return f"{{name}} must be at least {minimum} pixels, got {','.join(map(str, v))}"
        return image_pixels_problem(v[0] * v[-1], ",".join(map(str, v)))

    return check


def image_pixels_problem(pixels: int, shown: str) -> str | None:
    """The message of a size of ``pixels`` pixels (given as ``shown``) over ``max_image_pixels()``, else None."""
    limit = max_image_pixels()
    if pixels <= limit:
        return None
    return (
        f"{{name}}={shown} is {megapixels(pixels)} megapixels, more than the {megapixels(limit)}-megapixel limit "
        f"of an image ({MAX_IMAGE_PIXELS_VARIABLE})"
    )


def megapixels(pixels: int) -> str:
    """``pixels`` in megapixels as a message shows it: 3 significant digits, whole numbers above 1000."""
    value = pixels / 1e6
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def positive_ints(v):
    return None if len(v) >= 1 and all(r >= 1 for r in v) else f"{{name}} must be positive integers, got {list(v)}"


def option(
    default: Any, help: str, choices: tuple | None = None, check: Check | None = None, free_text: bool = False
) -> Any:
    """A configuration field: its default, the help line of its flag, its choices or its check.

    A field with choices is an enum flag, refused by the flag parser; ``free_text`` makes it a string flag
    whose value the configuration refuses, naming the choices (``--x='y' is unknown; valid: a, b``)."""
    metadata = {"help": help, "choices": choices, "check": check, "free_text": free_text}
    return dataclasses.field(default=default, metadata=metadata)


class Section:
    """Behaviour shared by the sections: checks on construction, ``replace``, dict round trip."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if isinstance(value, list):  # tuples from JSON lists and flag lists
                object.__setattr__(self, f.name, value := tuple(value))
            if value is None:
                continue
            choices = meta.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(
                    f.name,
                    f"unknown {{name}} {value!r}; choose one of {list(choices)}",
                    f"--{f.name}={value!r} is unknown; valid: {', '.join(map(str, choices))}",
                )
            problem = meta["check"](value) if meta.get("check") else None
            if problem:
                raise ConfigError(f.name, problem)
        self.check()

    def check(self):
        """Checks across fields of this section (one-line ``ConfigError``)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], strict: bool = True):
        """The section from ``{name: value}``; unknown names refused (``strict``) or ignored."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown and strict:
            raise ValueError(f"unknown option(s) {unknown} for {cls.__name__}; known: {sorted(cls.names())}")
        return cls(**{k: v for k, v in values.items() if k in cls.names()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{name: value}`` (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    # Read-only mapping access, so code and saved configurations written as ``options["name"]`` keep working.
    def __getitem__(self, name: str) -> Any:
        if name not in self.names():
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self):
        return iter(self.names())

    def __len__(self):
        return len(self.names())

    def keys(self):
        return self.names()

    def items(self):
        return [(k, getattr(self, k)) for k in self.names()]

    def get(self, name, default=None):
        return getattr(self, name) if name in self.names() else default

    def __contains__(self, name):
        return name in self.names()


# ------------------------------------------------------------------------------------ sections
@dataclasses.dataclass(frozen=True)
class ModelConfig(Section):
    """The network of Sec. 3.2 (Fig. 3): backbone, heads, memory."""

    backbone: str = option(
        "resnet50",
        f"Backbone: a built-in ResNet ({', '.join(BACKBONES)}) or a keras-hub DINOv2/DINOv3 preset: a name "
        "(dinov2_base; downloaded once, needs the network), a handle (kaggle://..., hf://...) or a local preset "
        "directory.",
        check=lambda v: None if isinstance(v, str) and v.strip() else "{name} must name a backbone or a preset",
    )
    backbone_tuning: str = option(
        "full",
        "What of a keras-hub backbone trains: full; frozen; lora (low-rank updates of the attention's query and "
        "value); adapter (learnable tokens refining each layer, Rein-style). Built-in ResNets train fully.",
        BACKBONE_TUNINGS,
    )
    lora_rank: int = option(8, "Rank of the LoRA updates (backbone_tuning=lora).", None, width)
    adapter_tokens: int = option(100, "Learnable tokens per layer (backbone_tuning=adapter).", None, width)
    adapter_rank: int = option(16, "Rank of each layer's adapter tokens (backbone_tuning=adapter).", None, width)
    head: str = option("deeplabv3plus", "Segmentation head: deeplabv3plus (Tables 1-3) or deeplabv2 (Table 4).", HEADS)
    num_classes: int = option(
        19,
        "Number of classes (19 Cityscapes train ids).",
        check=between(2, MAX_CLASSES, " (labels are 8-bit, 255 is ignore)"),
    )
    output_stride: int | None = option(
        None,
        "Backbone output stride (default: 16 for deeplabv3plus, 8 for deeplabv2).",
        check=lambda v: None
        if v in OUTPUT_STRIDES
        else f"{{name}} must be 8, 16 or 32 (the backbone's output stride), got {v}",
    )
    backbone_weights: str | None = option(
        None, "Backbone weights: 'imagenet' (needs network) or a .keras/.weights.h5 file; empty: random."
    )
    feature_channels: int = option(256, "Channels C of the encoder features F and of the memory rows.", None, width)
    decoder_channels: int = option(256, "Channels of the DeepLabV3+ decoder and the aux head.", None, width)
    low_level_channels: int = option(48, "Channels of the DeepLabV3+ low-level projection.", None, width)
    aspp_rates: tuple[int, ...] = option(
        (6, 12, 18), "ASPP atrous rates at output stride 16 (doubled at 8).", None, positive_ints
    )
    aux_head: bool = option(True, "Auxiliary FCN head on conv4_x (loss weight aux_weight).")
    dropout: float = option(0.1, "Dropout rate in ASPP and the aux head, in [0, 1).", None, unit_interval)
    bn_momentum: float = option(
        0.9, "BatchNorm moving-average momentum, in [0, 1) (PyTorch's 0.1).", None, unit_interval
    )
    bn_epsilon: float = option(
        1e-5,
        "BatchNorm epsilon of the heads, the update network and the read block (1e-5: PyTorch's, the "
        "reference's; 1e-3: Keras's, mgml_tf before this flag). The backbone keeps 1.001e-5.",
        check=positive,
    )
    synchronized_bn: bool = option(False, "Synchronised BatchNorm (multi-replica training).")
    use_memory: bool = option(True, "Use the categorical memory (forced off by method=baseline/mldg).")
    use_update_network: bool = option(True, "Use the memory update network U (Table 9).")
    memory_momentum: float = option(0.8, "Memory update momentum m of eq. 2, in [0, 1).", None, unit_interval)
    memory_temperature: float = option(
        1.0,
        "Memory softmax temperature T, > 0 (1: the paper, which has none); where it acts: --memory_temperature_on.",
        check=positive,
    )
    memory_temperature_on: str = option(
        "cohesion",
        "cohesion: T divides the cohesion-loss logits only (the reference); read: the read softmax of eq. 4 only "
        "(mgml_tf before this flag); both.",
        MEMORY_TEMPERATURE_ON,
    )
    memory_score_scale: str = option(
        "fixed",
        "fixed: the read and cohesion logits are the cosine scores (divided by T as --memory_temperature_on says; "
        "the paper). learned: both are s * scores with one trainable s = exp(log_s), initialised at 1/T, at most "
        "100 (beyond the paper; --memory_temperature_on is then ignored).",
        MEMORY_SCORE_SCALES,
    )
    memory_centering: str = option(
        "none",
        "none: the read's cosines of eq. 4 (the paper). mean_row: cosines after subtracting the mean memory row "
        "from the rows and the normalised query, re-normalised (beyond the paper; the memory and its update "
        "unchanged).",
        MEMORY_CENTERINGS,
    )
    update_network_input: str = option(
        "normalized",
        "What the update network U reads: normalized: normalize(F) (the paper, Sec. 3.2); raw: F (the reference).",
        UPDATE_NETWORK_INPUTS,
    )

    def check(self):
        hub = self.backbone not in BACKBONES
        if hub and self.backbone_weights:
            raise ConfigError(
                "backbone_weights",
                "a keras-hub preset carries its own weights: drop {name}",
                "--backbone_weights is for the built-in ResNets; a keras-hub preset carries its own weights",
            )
        if not hub and self.backbone_tuning != "full":
            raise ConfigError(
                "backbone_tuning",
                f"{{name}}={self.backbone_tuning!r} needs a keras-hub backbone; {self.backbone} trains fully",
                f"--backbone_tuning={self.backbone_tuning} needs a keras-hub backbone; {self.backbone} trains fully",
            )

    def resolved(self, method: MethodConfig | None = None) -> ModelConfig:
        """With implied values filled in: the head's output stride, no memory for a method without one."""
        out = self if self.output_stride is not None else self.replace(output_stride=DEFAULT_OUTPUT_STRIDE[self.head])
        if method is not None and not _method_uses_memory(method.method):
            out = out.replace(use_memory=False)
        return out


@dataclasses.dataclass(frozen=True)
class MethodConfig(Section):
    """The training method and Algorithm 1's options (Sec. 3.3, Tables 5-7)."""

    method: str = option(
        "mgml",
        "mgml (Algorithm 1), baseline (aggregated sources), mldg (meta-learning without memory), memory_agg "
        "(memory on aggregated sources).",
        METHOD_NAMES,
    )
    meta_order: int | None = option(
        None,
        "2: second-order meta-gradient (the paper); 1: first order (the reference code); 0: episodic, no inner "
        "step (Table 7). Default: 2, or 1 for keras-hub backbones of more than 100M parameters "
        "(docs/FOUNDATION.md, 'Second or first order').",
        META_ORDERS,
    )
    outer_objective: str = option(
        "mldg", "mldg: J = L_in + L_out (reference); meta_test_only: J = L_out (eq. 11).", OUTER_OBJECTIVES
    )
    inner_lr_ratio: float = option(
        0.25, "Inner learning rate alpha as a fraction of the outer rate beta (1/4 in the paper).", None, non_negative
    )
    memory_read: str = option(
        "softmax", "softmax (default) or gumbel (training only, the reference's read).", MEMORY_READS
    )
    memory_prime_freeze: str = option(
        "encoder", "Parameters frozen when writing M' (eq. 10; Table 6).", MEMORY_PRIME_FREEZES
    )
    meta_test_memory: str = option(
        "m_prime",
        "Memory the meta-test step reads: m_prime (eq. 10, re-written with the fast weights) or m_hat (written "
        "with theta in the meta-train step; Table 6's first row).",
        META_TEST_MEMORIES,
    )
    bn_statistics_from: str = option(
        "meta_train",
        "Passes whose batches update the BatchNorm moving statistics: meta_train (the meta-train pass only, as "
        "the reference) or every_pass (also M' and the meta-test pass: mgml_tf before this flag). One pass either "
        "way for baseline and memory_agg.",
        BN_STATISTICS_SOURCES,
    )
    use_cohesion: bool = option(True, "Feature cohesion loss (eq. 6; Table 5).")
    use_divergence: bool = option(True, "Memory divergence loss (eq. 7; Table 5).")
    seg_weight: float = option(1.0, "Weight of the segmentation loss.", None, non_negative)
    aux_weight: float = option(0.4, "Weight of the auxiliary loss (0.4).", None, non_negative)
    cohesion_weight: float = option(0.02, "Weight lambda_1 of the cohesion loss (0.02).", None, non_negative)
    divergence_classification_weight: float = option(
        0.2, "Weight of the memory classification term of L_div (0.2).", None, non_negative
    )
    divergence_cosine_weight: float = option(
        0.4, "Weight of the memory cosine term of L_div (0.4 in the reference).", None, non_negative
    )
    weight_decay: float = option(5e-4, "L2 weight decay added to the gradients (5e-4).", None, non_negative)
    ignore_index: int = option(255, "Label value ignored by losses and metrics.")
    seed: int = option(
        0,
        "Seed of the initialisation, the episodes (domain splits, files, augmentation) and Gumbel noise.",
        check=non_negative_int,
    )


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(Section):
    """SGD with momentum and the learning-rate schedule."""

    learning_rate: float = option(1e-2, "Outer learning rate beta (1e-2).", check=positive_number)
    lr_schedule: str = option(
        "exponential",
        "exponential (lr * exp(-9 t / 120000), the reference), poly (power 0.9 over train_steps) or constant.",
        SCHEDULES,
    )
    train_steps: int = option(30000, "Number of training steps (iterations).", None, positive_int)
    optimizer_momentum: float = option(0.9, "SGD momentum, in [0, 1).", None, unit_interval)


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Section):
    """The training run: where it writes, what it reads, how often it logs, checkpoints and evaluates."""

    model_dir: str | None = option(
        None,
        "Run directory: checkpoints, TensorBoard events, flags, evaluation results. Training resumes from the "
        "newest checkpoint in it.",
    )
    sources: str | None = option(
        None, "Source domains: name:root comma list (e.g. gtav:/data/GTAV,synthia:/data/SYNTHIA), or 'synthetic'."
    )
    batch_per_domain: int = option(4, "Images of every source domain per step.", None, positive_int)
    crop_size: tuple[int, ...] = option((768,), "Training crop: size or height,width.", None, sizes(32))
    checkpoint_every: int = option(1000, "Write a checkpoint every N steps (and at the end).", None, positive_int)
    keep_checkpoints: int = option(5, "Keep the newest K checkpoints.", None, positive_int)
    eval_every: int = option(0, "Evaluate on the targets every N steps (0: only at the end).", None, non_negative_int)
    log_every: int = option(50, "Print a progress line and write summaries every N steps.", None, positive_int)
    memory_init_batches: int = option(
        100,
        "Source batches used to initialise the memory (fresh runs only; 0: keep the random initial memory).",
        check=non_negative_int,
    )
    memory_rewrite_every: int = option(
        0,
        "Rewrite the memory as the class means of the current encoder's features (as at the start, from "
        "--memory_init_batches batches) every N steps; 0: never (the paper: written once from the untrained "
        "encoder, then only by the update network).",
        check=non_negative_int,
    )
    deterministic: bool = option(
        False,
        "Reproducible run: deterministic kernels (tf.config.experimental.enable_op_determinism), deterministic "
        "input pipeline order, every seed from --seed; two runs give bit-identical losses and weights on CPU. On "
        "GPU slower, and ops without a deterministic GPU kernel raise (docs/RELIABILITY.md).",
    )
    nonfinite: str = option(
        "stop",
        "A step whose loss or gradients are NaN/Inf is never applied; stop: end the run with a one-line error "
        "naming the step; skip: go on and count it (see --max_nonfinite_steps).",
        NONFINITE_POLICIES,
    )
    max_nonfinite_steps: int = option(
        10,
        "With --nonfinite=skip: stop once more than this many steps of one run were skipped.",
        None,
        non_negative_int,
    )
    summary_images: int = option(2, "Images written to TensorBoard at each evaluation.", None, non_negative_int)

    @property
    def crop(self) -> tuple[int, int]:
        """``(height, width)`` of the training crop."""
        return _pair(self.crop_size)


@dataclasses.dataclass(frozen=True)
class EvaluationConfig(Section):
    """Evaluation on the target domains (during training and by ``mgml_tf.evaluate``)."""

    targets: str | None = option(
        None,
        "Target domains to evaluate: name:root comma list, or 'synthetic' (the embedded default targets), "
        "'synthetic:in_domain' (the held-out images of the synthetic source styles, see --synthetic_num_source_val).",
    )
    sliding_window: bool = option(False, "Sliding-window inference instead of whole images.")
    window_size: tuple[int, ...] = option((512, 1024), "Sliding window height,width (or one size).", None, sizes(32))
    window_overlap: float = option(1.0 / 3.0, "Sliding window overlap fraction, in [0, 1).", None, unit_interval)
    flip: bool = option(False, "Average the prediction with that of the mirrored image.")
    eval_resize: tuple[int, ...] = option(
        (),
        "Resize each image to fit within height,width (aspect ratio kept) before inference, the probabilities "
        "back to the label's size after (the foundation-model papers' test resize: 512,1024); empty: none.",
        None,
        lambda v: None if not v else sizes(32)(v),
    )
    num_classes_protocol: str = option(
        "19",
        "mIoU over 19 classes, or the 16 classes shared with SYNTHIA (Table 4: terrain, truck, train dropped).",
        PROTOCOLS,
    )
    max_eval_images: int = option(0, "Evaluate at most this many images per target (0: all).", None, non_negative_int)

    @property
    def window(self) -> tuple[int, int]:
        """``(height, width)`` of the sliding window."""
        return _pair(self.window_size)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig(Section):
    """The embedded default domains that ``--sources=synthetic`` / ``--targets=synthetic`` generate."""

    synthetic_root: str = option(
        os.path.join(tempfile.gettempdir(), "mgml_tf_synthetic"),
        "Where the embedded default domains are generated when --sources/--targets say 'synthetic' (generated "
        "once, reused afterwards).",
        check=lambda v: None if v else "{name} must not be empty",
    )
    synthetic_num_train: int = option(200, "Images per synthetic source domain.", None, at_least(1))
    synthetic_num_val: int = option(50, "Images per synthetic target domain.", None, at_least(1))
    synthetic_height: int = option(256, "Height of the synthetic images.", None, at_least(32))
    synthetic_width: int = option(512, "Width of the synthetic images.", None, at_least(32))
    synthetic_family: str = option(
        "streets",
        "Generator that 'synthetic' expands to: streets (mgml_tf.synthetic.streets) or towns "
        "(mgml_tf.synthetic.towns, a second family sharing no scene code, style or palette with it).",
        SYNTHETIC_FAMILIES,
        free_text=True,
    )
    synthetic_num_source_val: int = option(
        0,
        "Held-out images per synthetic source style (a seed stream disjoint from the training images), under "
        "<root>/<style>_val; --targets=synthetic:in_domain evaluates on them.",
        check=non_negative_int,
    )

    def check(self):
        problem = image_pixels_problem(
            self.synthetic_height * self.synthetic_width,
            f"{self.synthetic_height} (x synthetic_width={self.synthetic_width})",
        )
        if problem:
            raise ConfigError("synthetic_height", problem)


@dataclasses.dataclass(frozen=True)
class DistributionConfig(Section):
    """Devices and numerics (docs/DISTRIBUTED.md)."""

    distribution_strategy: str = option(
        "auto",
        "auto (mirrored over the GPUs when there are several, else one device) | one_device | mirrored | "
        "multi_worker (TF_CONFIG).",
        STRATEGIES,
        free_text=True,
    )
    num_devices: int | None = option(
        None,
        "Replicas of a mirrored run: GPUs, or on a machine without GPUs the number of logical CPU devices the "
        "CPU is split into (default: all GPUs / 1).",
        check=lambda v: None if v >= 1 else f"{{name}} must be a positive integer, got {v}",
    )
    mixed_precision: str = option(
        "none",
        "none | mixed_float16 (loss-scaled, also the inner step) | mixed_bfloat16; the memory, losses and cosine "
        "scores stay float32.",
        PRECISIONS,
        free_text=True,
    )
    jit_compile: bool = option(False, "Compile the train step with XLA (one device only).")
    debug_dump_variables: str | None = option(
        None, "(testing) At the end, every task writes its final model variables to PREFIX.<task>.npz."
    )


#: Options that fix the architecture or the method: a model directory made with other values is refused.
ARCHITECTURE_KEYS = (
    "backbone",
    "backbone_tuning",
    "lora_rank",
    "adapter_tokens",
    "adapter_rank",
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

# What a configuration saved before an option existed means: the behaviour of that time (docs/REFERENCE.md).
# MemorySegmenter.from_config and model directories read a missing key as this value, not the new default.
# (memory_score_scale and memory_centering are absent: their defaults are the behaviour from before them.)
LEGACY_OPTIONS = dict(
    bn_epsilon=1e-3, memory_temperature_on="read", update_network_input="normalized", bn_statistics_from="every_pass"
)


def with_legacy_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` (a saved configuration) with every option it predates set to its ``LEGACY_OPTIONS`` value."""
    return {**LEGACY_OPTIONS, **options}


#: The sections in the order of a run's configuration; ``RunConfig`` has one attribute per key.
SECTIONS: dict[str, type[Section]] = {
    "model": ModelConfig,
    "method": MethodConfig,
    "optimizer": OptimizerConfig,
    "training": TrainingConfig,
    "evaluation": EvaluationConfig,
    "synthetic": SyntheticConfig,
    "distribution": DistributionConfig,
}
#: The sections ``build_model`` takes as keyword arguments.
MODEL_SECTIONS = ("model", "method", "optimizer")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A whole run: one section per ``SECTIONS`` key."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    method: MethodConfig = dataclasses.field(default_factory=MethodConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)
    distribution: DistributionConfig = dataclasses.field(default_factory=DistributionConfig)

    def __post_init__(self):
        check_model_and_method(self.model, self.method)

    def model_options(self) -> dict[str, Any]:
        """The ``build_model`` keyword arguments (model, method and optimiser sections)."""
        return {k: v for name in MODEL_SECTIONS for k, v in getattr(self, name).items()}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], strict: bool = True) -> RunConfig:
        """From ``{option name: value}`` over all sections (the shape of ``build_model``'s keyword arguments
        and of the flags); unknown names refused (``strict``) or ignored."""
        known = {n for section in SECTIONS.values() for n in section.names()}
        unknown = sorted(set(values) - known)
        if unknown and strict:
            raise ValueError(f"unknown option(s) {unknown}; known options: {sorted(known)}")
        return cls(**{name: section.from_dict(values, strict=False) for name, section in SECTIONS.items()})

    @classmethod
    def from_dict(cls, sections: Mapping[str, Mapping[str, Any]]) -> RunConfig:
        """From ``to_dict()``'s shape; a missing section or option takes its default."""
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            raise ValueError(f"unknown configuration section(s) {unknown}; known: {list(SECTIONS)}")
        return cls(**{name: SECTIONS[name].from_dict(sections.get(name, {})) for name in SECTIONS})

    def replace(self, **changes) -> RunConfig:
        """A copy with options changed by name, whatever their section: ``config.replace(meta_order=1)``."""
        owners = {n: s for s, section in SECTIONS.items() for n in section.names()}
        unknown = sorted(set(changes) - set(owners))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}")
        per_section = {}
        for name, value in changes.items():
            per_section.setdefault(owners[name], {})[name] = value
        return dataclasses.replace(self, **{s: getattr(self, s).replace(**values) for s, values in per_section.items()})


def to_flagfile(values: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """Flagfile text (``--name=value`` lines, booleans as ``--name``/``--noname``) of flat options ``{name: value}``
    (the sections of a configuration merged, as ``flags.json``'s ``"flags"``); None values are left out. The command
    line reads it back with ``--flagfile``."""
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


def check_model_and_method(model: ModelConfig, method: MethodConfig) -> None:
    """Checks across the model and method sections (one-line ``ConfigError``)."""
    if _method_uses_memory(method.method) and not model.use_memory:
        raise ConfigError(
            "use_memory",
            f"method {method.method!r} needs the memory; drop {{name}}=False or choose method 'baseline' or 'mldg'",
            f"--method={method.method} needs the memory; drop --nouse_memory or use --method=baseline or --method=mldg",
        )
    if not (0 <= method.ignore_index <= 255 and method.ignore_index >= model.num_classes):
        raise ConfigError("ignore_index", f"{{name}} must be in [num_classes, 255], got {method.ignore_index}")


def _method_uses_memory(name: str) -> bool:
    return METHODS[name].uses_memory


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def field_type(section: type[Section], name: str) -> type:
    """The plain type of a field (``int`` for ``int | None``, ``tuple`` for ``tuple[int, ...]``)."""
    hint = typing.get_type_hints(section)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple
    if args and origin is not tuple:
        inner = args[0]
        return tuple if typing.get_origin(inner) is tuple else inner
    return hint


def check_json_types(section: type[Section], values: Mapping[str, Any]) -> None:
    """Refuses (``ConfigError``, one line naming the option) a value read from JSON whose type is not its field's:
    a string for an integer, a float for an integer, a number for a boolean, a list of non-integers for a size.
    ``None`` is accepted where the field's default is ``None``; names the section does not know are left to
    ``from_dict`` (which refuses them). The sections check ranges and choices, not types, because the Python API
    passes NumPy integers and the flags are typed by absl; JSON (a saved configuration, a preset) is neither."""
    fields = {f.name: f for f in dataclasses.fields(section)}
    expected = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        tuple: "a list of integers",
    }
    for name, value in values.items():
        if name not in fields or (value is None and fields[name].default is None):
            continue
        kind = field_type(section, name)
        if kind is tuple:
            ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise ConfigError(name, f"{{name}} must be {expected.get(kind, kind.__name__)}, got {value!r}")
