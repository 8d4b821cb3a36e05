"""``python -m mgml_tf.export``: writes a SavedModel for serving. The entry point only: the command (its flags and
``main``) is ``mgml_tf.cli.export``; docs/CLI.md describes it."""

import sys

from mgml_tf.cli.common import run
from mgml_tf.cli.export import PROG, main

if __name__ == "__main__":
    run(PROG, main, sys.argv)
