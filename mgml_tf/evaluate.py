"""``python -m mgml_tf.evaluate``: evaluates a model directory on target domains. The entry point only: the command
(its flags and ``main``) is ``mgml_tf.cli.evaluate``; docs/CLI.md describes it."""

import sys

from mgml_tf.cli.common import run
from mgml_tf.cli.evaluate import PROG, main

if __name__ == "__main__":
    run(PROG, main, sys.argv)
