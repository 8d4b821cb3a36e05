"""``python -m mgml_tf.train``: trains a model. The entry point only: the command (its flags and ``main``) is
``mgml_tf.cli.train``; docs/CLI.md describes it."""

import sys

from mgml_tf.cli.common import run
from mgml_tf.cli.train import PROG, main

if __name__ == "__main__":
    run(PROG, main, sys.argv)
