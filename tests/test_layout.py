"""The package's modules depend one way: maths <- layers <- models <- training <- the command line (mgml_tf.cli),
with the data pipeline below the model and the training. Each check imports one module in a fresh interpreter
and lists the mgml_tf modules it loaded."""

import subprocess
import sys

import pytest

from tests.cli_helpers import REPO, env


def loaded_by(module):
    """The ``mgml_tf`` modules in ``sys.modules`` after ``import module`` in a new interpreter."""
    code = f"import sys, {module}; print('\\n'.join(n for n in sys.modules if n.split('.')[0] == 'mgml_tf'))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env(), capture_output=True, text=True, timeout=300, check=True
    )
    loaded = set(proc.stdout.split())
    assert module in loaded
    return loaded


def under(loaded, package):
    return sorted(n for n in loaded if n == package or n.startswith(package + "."))


@pytest.mark.parametrize("module", ["mgml_tf.training.loop", "mgml_tf.serving", "mgml_tf.evaluation"])
def test_training_serving_and_evaluation_do_not_import_the_command_line(module):
    assert under(loaded_by(module), "mgml_tf.cli") == []


def test_data_imports_neither_the_models_nor_the_training():
    loaded = loaded_by("mgml_tf.data")
    assert under(loaded, "mgml_tf.models") == [] and under(loaded, "mgml_tf.training") == []


@pytest.mark.parametrize("module", ["mgml_tf.errors", "mgml_tf.files"])
def test_the_errors_and_the_atomic_writers_import_nothing_of_mgml_tf(module):
    assert loaded_by(module) == {"mgml_tf", module}
