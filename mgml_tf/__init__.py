"""mgml_tf: memory-guided meta-learning for domain-generalised semantic segmentation in Keras 3.

"Pin the Memory: Learning to Generalize Semantic Segmentation" (Kim et al., CVPR 2022).
"""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
