"""Shared test setup: quiet TensorFlow, small thread pools, the opt-in `slow` marker."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts from float32 and the default dtype policy, whatever the previous test set."""
    import keras

    yield
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")
