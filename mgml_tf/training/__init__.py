"""Training: the loop behind ``python -m mgml_tf.train`` (``loop``), checkpoints, TensorBoard summaries, the
model directory of a run (``model_dir``) and the domains a run names with ``--sources``/``--targets``
(``data``). The command line is ``mgml_tf.cli``; nothing here imports it.
"""
