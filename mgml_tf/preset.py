"""``python -m mgml_tf.preset``: packs a trained model directory into a shareable preset folder. The entry point
only: the command (its flags and ``main``) is ``mgml_tf.cli.preset``, the format ``mgml_tf.training.preset``;
docs/CLI.md describes it."""

import sys

from mgml_tf.cli.common import run
from mgml_tf.cli.preset import PROG, main

if __name__ == "__main__":
    run(PROG, main, sys.argv)
