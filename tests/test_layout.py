"""The package's modules depend one way: maths <- layers <- models <- training <- the command line (mgml_tf.cli),
with the data pipeline below the model and the training. The import checks import one module in a fresh
interpreter and list the mgml_tf modules it loaded; the source checks read every import statement, the ones
inside functions included."""

import ast
import os
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


def imported_names(path):
    """Every module an ``import`` statement of the file names (``from a import b`` gives ``a`` and ``a.b``)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_modules():
    """``{module name: path}`` of every module of mgml_tf."""
    root = os.path.join(REPO, "mgml_tf")
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), REPO)[: -len(".py")].split(os.sep)
                out[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = os.path.join(folder, name)
    return out


#: ``python -m mgml_tf.<command>``: the only modules outside mgml_tf.cli that import it.
ENTRY_POINTS = {
    "mgml_tf.train",
    "mgml_tf.evaluate",
    "mgml_tf.export",
    "mgml_tf.predict",
    "mgml_tf.preset",
    "mgml_tf.data.check",  # the data tools are commands too (python -m mgml_tf.data.check)
    "mgml_tf.data.gtav_split",
}


def test_only_the_entry_points_import_the_command_line_even_inside_functions():
    offenders = {
        module: sorted(under(imported_names(path), "mgml_tf.cli"))
        for module, path in package_modules().items()
        if module not in ENTRY_POINTS and not under({module}, "mgml_tf.cli")
    }
    assert {m: names for m, names in offenders.items() if names} == {}


def test_evaluation_imports_nothing_of_the_training_it_serves_even_inside_functions():
    """The training loop evaluates with mgml_tf.evaluation, so evaluation stays below training."""
    assert under(imported_names(package_modules()["mgml_tf.evaluation"]), "mgml_tf.training") == []
