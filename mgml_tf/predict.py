"""``python -m mgml_tf.predict``: writes predictions and memory activation maps of images. The entry point only: the
command (its flags and ``main``) is ``mgml_tf.cli.predict``; docs/CLI.md describes it."""

import sys

from mgml_tf.cli.common import run
from mgml_tf.cli.predict import PROG, main

if __name__ == "__main__":
    run(PROG, main, sys.argv)
