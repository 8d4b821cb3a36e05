"""``python -m mgml_tf.synthetic``: the command line of `mgml_tf.synthetic.cli`."""

from absl import app, flags

from mgml_tf.synthetic import cli

cli.define_flags(flags.FLAGS)
flags.adopt_module_key_flags(cli)  # so that --help lists them
app.run(lambda argv: cli.run(argv, flags.FLAGS))
