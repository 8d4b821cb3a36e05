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


# The files whose tests run several training processes for minutes: started first.
LONGEST_FILES = (
    "test_worker_faults.py",
    "test_distribution_cli.py",
    "test_preemption.py",
    "test_float32_divergence.py",
)


def pytest_collection_modifyitems(config, items):
    """The longest files first, then those with the most ``slow`` tests, each file's tests in their order: with
    one process per core (``-n auto --dist loadfile``), a long file started last finishes alone while the other
    cores idle."""
    slow = {}
    for item in items:
        slow.setdefault(item.path, 0)
        slow[item.path] += item.get_closest_marker("slow") is not None
    order = sorted(slow, key=lambda p: (p.name not in LONGEST_FILES, -slow[p]))
    rank = {path: i for i, path in enumerate(order)}
    items.sort(key=lambda item: rank[item.path])
