"""Safe loading: nothing in the package deserialises executable content (pickle, eval/exec, yaml.load,
unsafe Keras deserialisation), and a .keras file carrying a Python lambda is refused by our loader."""

import os
import re

import keras
import numpy as np
import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mgml_tf")

#: Calls that can execute code hidden in a file (checkpoints, flagfiles, JSON, .keras, .npz, ...).
FORBIDDEN = {
    "pickle-family import": re.compile(
        r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|cloudpickle|marshal|"
        r"shelve|joblib)\b",
        re.M,
    ),
    "pickle call": re.compile(r"\b(pickle|dill|cloudpickle|marshal|joblib)\.(load|loads|Unpickler)\b"),
    "np.load(allow_pickle=True)": re.compile(r"allow_pickle\s*=\s*True"),
    "eval/exec/compile builtin": re.compile(r"(?<![\w.`])(?<!def )(eval|exec|compile)\s*\("),
    "yaml.load": re.compile(r"\byaml\.(load|unsafe_load|full_load|load_all)\s*\("),
    "keras safe_mode=False": re.compile(r"safe_mode\s*=\s*(False|0)\b"),
    "keras unsafe deserialization": re.compile(r"enable_unsafe_deserialization"),
    "torch.load": re.compile(r"\btorch\.load\s*\("),
    "__import__": re.compile(r"(?<![\w.])__import__\s*\("),
}


def _scan(text):
    return [name for name, pattern in FORBIDDEN.items() if pattern.search(text)]


def test_patterns_catch_what_they_are_for():
    """The scan below can fail: each pattern finds its call in a sample, and not in harmless look-alikes."""
    bad = [
        "import pickle",
        "from dill import loads",
        "x = pickle.loads(b)",
        "np.load(p, allow_pickle=True)",
        "eval(text)",
        "exec(code)",
        "yaml.load(f)",
        "keras.saving.load_model(p, safe_mode=False)",
        "keras.config.enable_unsafe_deserialization()",
        "torch.load(p)",
        "__import__(name)",
    ]
    for line in bad:
        assert _scan(line), line
    harmless = [
        "model.evaluate(x)",
        "model.compile(optimizer=o)",
        "build_model(compile=True)",
        "yaml.safe_load(f)",
        "np.load(p)",
        "keras.saving.load_model(p, compile=False)",
        "def evaluate_domain(predictor):",
        "json.load(f)",
        "def compile(self, optimizer=None):",
        "``compile()`` with the paper's optimiser",
    ]
    for line in harmless:
        assert not _scan(line), line


def test_package_source_has_no_unsafe_deserialisation():
    hits = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    for number, line in enumerate(f, 1):
                        code = line.split("#", 1)[0]
                        hits += [f"{os.path.relpath(path, PACKAGE)}:{number}: {kind}" for kind in _scan(code)]
    assert not hits, hits


def test_keras_file_with_a_lambda_is_refused(tmp_path, monkeypatch):
    """A .keras backbone-weights file whose Lambda would run code is refused by build_model (Keras'
    safe_mode, which our loader never turns off); the lambda does not run."""
    import mgml_tf

    marker = tmp_path / "lambda_ran"
    monkeypatch.setenv("MGML_TF_TEST_MARKER", str(marker))
    inputs = keras.Input((8, 8, 3))
    # (no defaults or closures: the lambda must survive Keras' own unsafe round trip below)
    outputs = keras.layers.Lambda(lambda x: (open(__import__("os").environ["MGML_TF_TEST_MARKER"], "w").close(), x)[1])(
        inputs
    )
    path = str(tmp_path / "evil.keras")
    keras.Model(inputs, outputs).save(path)
    os.remove(marker)  # the lambda ran once while the model was built
    with pytest.raises(ValueError, match=r"(?s)evil\.keras.*(Lambda|safe_mode)"):
        mgml_tf.build_model(backbone="resnet_small", backbone_weights=path)
    assert not marker.exists()
    # The premise: loaded unsafely, the file does run its code.
    keras.saving.load_model(path, safe_mode=False)(np.zeros([1, 8, 8, 3], np.float32))
    assert marker.exists()
