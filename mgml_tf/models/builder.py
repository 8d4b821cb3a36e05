"""``build_model(**options)``: a compiled ``MemorySegmenter`` from flag-named options."""

from __future__ import annotations

from typing import Any

from mgml_tf import optim
from mgml_tf.config import MethodConfig, ModelConfig, OptimizerConfig
from mgml_tf.models.segmenter import MemorySegmenter


def build_model(compile: bool = True, **options: Any) -> MemorySegmenter:
    """Builds (and by default compiles with the paper's optimiser) a ``MemorySegmenter``.

    Options are the flag names of ``mgml_tf.train``, the fields of ``mgml_tf.config``'s ``ModelConfig``
    (``backbone``, ``head``, ``num_classes``, ``memory_momentum``, ...), ``MethodConfig`` (``method``,
    ``meta_order``, ``inner_lr_ratio``, ...) and ``OptimizerConfig`` (``learning_rate``, ...); a
    ``RunConfig`` gives them as ``build_model(**config.model_options())``. ``model.fit`` on
    ``mgml_tf.data.episodes(...)`` then runs Algorithm 1.
    """
    known = set(ModelConfig.names()) | set(MethodConfig.names()) | set(OptimizerConfig.names())
    known |= {"name", "dtype", "backbone_architecture"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; known options: {sorted(known)}")
    opt = OptimizerConfig.from_dict({k: options.pop(k) for k in list(options) if k in OptimizerConfig.names()})
    model = MemorySegmenter(**options)
    if compile:
        model.compile(
            optimizer=optim.build_optimizer(opt.learning_rate, opt.lr_schedule, opt.train_steps, opt.optimizer_momentum)
        )
    return model
