"""``build_model(**options)``: a compiled ``MemorySegmenter`` from flag-named options."""

from __future__ import annotations

from typing import Any

from mgml_tf import optim
from mgml_tf.models.meta_learning import TRAINING_DEFAULTS
from mgml_tf.models.segmenter import MODEL_DEFAULTS, MemorySegmenter

OPTIMIZER_DEFAULTS = dict(learning_rate=1e-2, lr_schedule="exponential", train_steps=30000, optimizer_momentum=0.9)


def build_model(compile: bool = True, **options: Any) -> MemorySegmenter:
    """Builds (and by default compiles with the paper's optimiser) a ``MemorySegmenter``.

    Options are the flag names of ``mgml_tf.train``: the network's (``MODEL_DEFAULTS``: ``backbone``,
    ``head``, ``num_classes``, ``memory_momentum``, ...), Algorithm 1's (``TRAINING_DEFAULTS``: ``method``,
    ``meta_order``, ``inner_lr_ratio``, ...) and the optimiser's (``OPTIMIZER_DEFAULTS``). ``model.fit`` on
    ``mgml_tf.data.episodes(...)`` then runs Algorithm 1.
    """
    known = set(MODEL_DEFAULTS) | set(TRAINING_DEFAULTS) | set(OPTIMIZER_DEFAULTS) | {"name", "dtype"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; known options: {sorted(known)}")
    opt = {**OPTIMIZER_DEFAULTS, **{k: options.pop(k) for k in list(options) if k in OPTIMIZER_DEFAULTS}}
    optimizer = optim.build_optimizer(
        opt["learning_rate"], opt["lr_schedule"], opt["train_steps"], opt["optimizer_momentum"]
    )
    model = MemorySegmenter(**options)
    if compile:
        model.compile(optimizer=optimizer)
    return model
