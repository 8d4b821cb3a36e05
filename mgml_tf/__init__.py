"""mgml_tf: memory-guided meta-learning for domain-generalised semantic segmentation in Keras 3.

"Pin the Memory: Learning to Generalize Semantic Segmentation" (Kim et al., CVPR 2022).

``mgml_tf.build_model(**options)`` returns a ``MemorySegmenter`` whose ``fit`` runs Algorithm 1 on
episodes from ``mgml_tf.data``; ``mgml_tf.memory`` holds the memory's maths as pure functions.
``mgml_tf.from_preset(path)`` is the model of a preset folder written by ``python -m mgml_tf.preset``.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_LAZY = {
    "build_model": "mgml_tf.models.builder",
    "MemorySegmenter": "mgml_tf.models.segmenter",
    "from_preset": "mgml_tf.training.preset",
}


def __getattr__(name):
    # Lazy so that `python -m mgml_tf.synthetic` and friends do not build the model stack.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mgml_tf' has no attribute {name!r}")


__all__ = ["build_model", "MemorySegmenter", "from_preset", "__version__"]
