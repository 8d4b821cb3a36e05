"""The command-line product: flags, model directories, checkpoints, the training loop.

Entry points: ``python -m mgml_tf.train``, ``mgml_tf.evaluate``, ``mgml_tf.export``, ``mgml_tf.predict``
(see docs/CLI.md). Submodules are imported lazily by the entry points so that a bad flag is reported before
TensorFlow loads.
"""
