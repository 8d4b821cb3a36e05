"""Shared test setup: quiet TensorFlow, a fresh Keras dtype policy per test.

Tests marked ``slow`` (end-to-end runs of the command-line tools, multi-process training, long loops) run
by default, as CI does; ``pytest -m "not slow"`` leaves them out for a quick loop."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts from float32 and the default dtype policy, whatever the previous test set."""
    import keras

    yield
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")
