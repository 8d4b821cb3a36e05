"""The command line: ``python -m mgml_tf.train``, ``mgml_tf.evaluate``, ``mgml_tf.export``, ``mgml_tf.predict``
(docs/CLI.md).

Each command's flags and ``main`` are in the module of its name here (``mgml_tf/<command>.py`` is only its
entry point); ``flags`` generates the flags from the configuration's fields (``mgml_tf.config``) and checks
their values; ``common`` parses the command line (flagfiles included), turns errors into one line and an exit
status, and imports TensorFlow quietly. The top of the package: it imports training, serving and evaluation,
and nothing else in ``mgml_tf`` imports it. TensorFlow is imported late, so a bad flag is reported before it
loads.
"""
