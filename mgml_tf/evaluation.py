"""Evaluation of a segmenter on target domains: the one path behind the trainer's periodic and final
evaluation and ``python -m mgml_tf.evaluate``.

* ``EvaluationSettings``: how images are inferred (whole image or sliding window, flip) and scored (class
  protocol, ignore index, images per target), as plain typed values;
* ``Predictor``: class probabilities (and memory weights) of a ``MemorySegmenter`` for one image;
* ``evaluate_domain``: one target's confusion matrix;
* ``evaluate_targets``: the results table of a list of targets (``eval_results.json``, ``--output_json``),
  with a callback per image (summary images, prediction PNGs) and per target (progress, summaries).
"""

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from mgml_tf import metrics as metrics_lib
from mgml_tf.data.labels import IGNORE_ID

PROTOCOLS = tuple(sorted(metrics_lib.PROTOCOLS, reverse=True))  # (19, 16)


def parse_window_size(value) -> tuple[int, int]:
    """``(height, width)`` of a window size: one size (square) or a height,width pair, as ints, digit strings
    (``--window_size`` gives ``["512", "1024"]`` or ``["512"]``) or a comma-separated string."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    try:
        sizes = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"window_size must be integers, got {value!r}") from None
    if len(sizes) not in (1, 2):
        raise ValueError(f"window_size is one size or height,width, got {len(sizes)} values: {value!r}")
    if min(sizes) < 1:
        raise ValueError(f"window_size must be positive, got {value!r}")
    return (sizes[0], sizes[0]) if len(sizes) == 1 else sizes


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    """How an evaluation infers and scores (``--sliding_window``, ``--window_size``, ``--window_overlap``,
    ``--flip``, ``--eval_resize``, ``--num_classes_protocol``, ``--max_eval_images`` and the model's ignore
    index).

    ``window_size`` is normalised to ``(height, width)`` ints (one size means a square window), ``resize`` to
    ``()`` (none) or ``(height, width)``.
    """

    sliding_window: bool = False
    window_size: tuple[int, int] = (512, 1024)
    window_overlap: float = 1.0 / 3.0
    flip: bool = False
    resize: tuple = ()
    num_classes_protocol: int = 19
    max_images: int = 0  # per target; 0: all
    ignore_index: int = IGNORE_ID

    def __post_init__(self):
        def set_(name, value):
            object.__setattr__(self, name, value)

        set_("sliding_window", bool(self.sliding_window))
        set_("window_size", parse_window_size(self.window_size))
        set_("window_overlap", float(self.window_overlap))
        set_("flip", bool(self.flip))
        set_("resize", parse_window_size(self.resize) if len(self.resize) else ())
        set_("num_classes_protocol", int(self.num_classes_protocol))
        set_("max_images", int(self.max_images))
        set_("ignore_index", int(self.ignore_index))
        if not 0.0 <= self.window_overlap < 1.0:
            raise ValueError(f"window_overlap must be in [0, 1), got {self.window_overlap}")
        if self.num_classes_protocol not in PROTOCOLS:
            raise ValueError(f"unknown class protocol {self.num_classes_protocol!r}; choose 19 or 16")
        if self.max_images < 0:
            raise ValueError(f"max_images must be >= 0, got {self.max_images}")

    @classmethod
    def from_flags(cls, fv, ignore_index=IGNORE_ID):
        """The settings of validated evaluation flags (``mgml_tf.cli.flags.define_eval_flags``); the flag
        object is read, not kept."""
        return cls(
            sliding_window=fv.sliding_window,
            window_size=fv.window_size,
            window_overlap=fv.window_overlap,
            flip=fv.flip,
            resize=tuple(getattr(fv, "eval_resize", ()) or ()),
            num_classes_protocol=int(fv.num_classes_protocol),
            max_images=fv.max_eval_images,
            ignore_index=ignore_index,
        )

    def describe(self):
        """``whole image`` or ``sliding window (H, W)``, then `` + flip`` if flipping, `` at most (H, W)`` if
        resizing."""
        mode = f"sliding window {self.window_size}" if self.sliding_window else "whole image"
        return mode + (" + flip" if self.flip else "") + (f" resized within {self.resize}" if self.resize else "")


def _window_starts(size, window, stride):
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride)) + [size - window]
    return sorted(set(starts))


class Predictor:
    """Class probabilities (and memory weights) of a ``MemorySegmenter`` for float images ``[1,H,W,3]``.

    ``sliding_window``: windows of ``window_size`` (padded when the image is smaller) with ``overlap``,
    probabilities averaged where windows overlap; ``flip``: average with the mirrored image's prediction;
    ``resize``: the image first resized (bilinear) to fit within ``(height, width)`` with its aspect ratio, the
    probabilities resized back to the image's size.
    Runs in inference mode through one ``tf.function`` with a dynamic spatial shape.
    """

    def __init__(self, model, sliding_window=False, window_size=(512, 1024), overlap=1.0 / 3.0, flip=False, resize=()):
        self.model = model
        self.resize = tuple(int(r) for r in resize)
        self.sliding_window = bool(sliding_window)
        self.window = tuple(int(w) for w in window_size)
        self.overlap = float(overlap)
        self.flip = bool(flip)
        spec = tf.TensorSpec([None, None, None, 3], tf.float32)

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def probs(images):
            p = tf.nn.softmax(model(images, training=False), axis=-1)
            if self.flip:
                p_flip = tf.nn.softmax(model(tf.reverse(images, axis=[2]), training=False), axis=-1)
                p = 0.5 * (p + tf.reverse(p_flip, axis=[2]))
            return p

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def probs_and_weights(images):
            p, w = model.predict_with_weights(images)
            return p, (w if w is not None else tf.zeros(tf.concat([tf.shape(p)[:3], [0]], 0)))

        self._probs = probs
        self._probs_and_weights = probs_and_weights

    @classmethod
    def from_settings(cls, model, settings):
        """The predictor of ``EvaluationSettings``' inference fields."""
        return cls(
            model,
            settings.sliding_window,
            settings.window_size,
            settings.window_overlap,
            settings.flip,
            settings.resize,
        )

    def probabilities(self, images):
        images = tf.convert_to_tensor(images, tf.float32)
        if not self.resize:
            return self._probabilities(images)
        h, w = int(images.shape[1]), int(images.shape[2])
        scale = min(self.resize[0] / h, self.resize[1] / w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        p = self._probabilities(tf.image.resize(images, size, "bilinear"))
        return tf.image.resize(p, (h, w), "bilinear").numpy()

    def _probabilities(self, images):
        if not self.sliding_window:
            return self._probs(images).numpy()
        b, h, w = images.shape[0], images.shape[1], images.shape[2]
        wh, ww = self.window
        pad_h, pad_w = max(0, wh - h), max(0, ww - w)
        padded = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]]) if pad_h or pad_w else images
        hp, wp = h + pad_h, w + pad_w
        sh = max(1, int(math.ceil(wh * (1 - self.overlap))))
        sw = max(1, int(math.ceil(ww * (1 - self.overlap))))
        total = None
        count = np.zeros((1, hp, wp, 1), np.float32)
        for y in _window_starts(hp, wh, sh):
            for x in _window_starts(wp, ww, sw):
                p = self._probs(padded[:, y : y + wh, x : x + ww]).numpy()
                if total is None:
                    total = np.zeros((b, hp, wp, p.shape[-1]), np.float32)
                total[:, y : y + wh, x : x + ww] += p
                count[:, y : y + wh, x : x + ww] += 1.0
        return (total / count)[:, :h, :w]

    def probabilities_and_weights(self, images):
        """``(probabilities, memory weights or None)`` of whole images (no sliding window, no flip)."""
        p, w = self._probs_and_weights(tf.convert_to_tensor(images, tf.float32))
        w = w.numpy()
        return p.numpy(), (w if w.shape[-1] else None)


def evaluate_domain(predictor, dataset, num_classes, ignore_index=255, max_images=0, on_image=None):
    """Confusion matrix and image count of one target over an ``evaluation_dataset`` (batch 1).

    ``on_image(index, image, label, prediction)`` is called for every image (e.g. to save PNGs or keep
    summary images).
    """
    confusion = np.zeros((num_classes, num_classes), np.int64)
    n = 0
    for images, labels in dataset:
        for i in range(images.shape[0]):
            if max_images and n >= max_images:
                return confusion, n
            image = images[i : i + 1]
            label = labels[i].numpy()
            prediction = np.argmax(predictor.probabilities(image)[0], axis=-1)
            confusion += metrics_lib.confusion_matrix(label, prediction, num_classes, ignore_index)
            if on_image is not None:
                on_image(n, image[0].numpy(), label, prediction)
            n += 1
    return confusion, n


class EvaluatedImage(NamedTuple):
    """One image of an evaluation, as ``evaluate_targets`` hands it to ``on_image``."""

    target: str  # the target's label (its key in the results)
    index: int  # position in the target, file order
    path: str  # the image file
    image: np.ndarray  # float32 [H, W, 3], 0..255
    label: np.ndarray  # int32 [H, W] ground-truth train ids (ignore index where unlabelled)
    prediction: np.ndarray  # int64 [H, W] predicted train ids


def domain_label(domain):
    """A short unique-ish name for result tables: dataset name plus the root's last folder."""
    return f"{domain.name}:{os.path.basename(os.path.normpath(domain.root))}"


def evaluate_targets(
    model,
    targets: Sequence[Any],
    settings: EvaluationSettings,
    step: int | None = None,
    on_image: Callable[[EvaluatedImage], None] | None = None,
    on_target: Callable[[str, dict], None] | None = None,
) -> dict:
    """``{target label: results}`` of ``model`` on every ``Domain`` of ``targets``, in order.

    Each entry is ``metrics.summarize``'s (``mIoU``, per-class ``IoU`` in percent, ``num_images``,
    ``protocol``), plus ``step`` when given; labels are ``domain_label``'s. ``on_image`` sees
    every evaluated image (``EvaluatedImage``); ``on_target(label, results)`` runs after each target.
    """
    from mgml_tf.data import evaluation_dataset

    num_classes = int(model.num_classes)
    if settings.num_classes_protocol == 16 and num_classes != 19:
        raise ValueError(f"the 16-class protocol needs 19-class predictions, the model has {num_classes} classes")
    predictor = Predictor.from_settings(model, settings)
    results = {}
    for domain in targets:
        label = domain_label(domain)

        def seen(index, image, truth, prediction, label=label, domain=domain):
            on_image(EvaluatedImage(label, index, domain.pairs[index][0], image, truth, prediction))

        confusion, n = evaluate_domain(
            predictor,
            evaluation_dataset(domain),
            num_classes,
            settings.ignore_index,
            settings.max_images,
            seen if on_image is not None else None,
        )
        results[label] = metrics_lib.summarize(confusion, n, settings.num_classes_protocol)
        if step is not None:
            results[label]["step"] = int(step)
        if on_target is not None:
            on_target(label, results[label])
    return results
