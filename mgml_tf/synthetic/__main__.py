"""``python -m mgml_tf.synthetic``: see `mgml_tf.synthetic.cli`."""

from mgml_tf.synthetic.cli import main

main()
