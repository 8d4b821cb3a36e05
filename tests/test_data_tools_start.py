"""The data tools start without TensorFlow where they do not need it: ``mgml_tf.data`` imports its names on
first use, so ``python -m mgml_tf.data.gtav_split`` never loads TensorFlow and ``python -m mgml_tf.data.check``
checks its flags before loading it (quietly) to read files. Each check runs the tool in a fresh interpreter
and reads ``sys.modules`` at its exit."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mgml_tf.data
from tests.cli_helpers import REPO, env

#: Runs ``python -m MODULE ARGS`` in this interpreter and prints its exit status and whether TensorFlow was
#: imported, as JSON, on the last line of stdout.
_PROBE = """
import json, runpy, sys
module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    status = 0
except SystemExit as e:
    status = e.code
print(json.dumps({"status": status, "tensorflow": "tensorflow" in sys.modules}))
"""


def probe(module, *args):
    """(exit status, TensorFlow imported?, stderr) of ``python -m module args`` in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *args],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    return result["status"], result["tensorflow"], proc.stderr


def test_gtav_split_runs_without_tensorflow(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    mat = str(tmp_path / "split.mat")
    scipy_io.savemat(
        mat,
        {
            k: np.asarray(v, np.float64).reshape(-1, 1)
            for k, v in (("trainIds", [1, 3]), ("valIds", [2]), ("testIds", [4]))
        },
    )
    status, tensorflow, stderr = probe(
        "mgml_tf.data.gtav_split", f"--split_mat={mat}", f"--output_dir={tmp_path / 'lists'}"
    )
    assert status == 0 and stderr == "", stderr
    assert sorted(os.listdir(tmp_path / "lists")) == ["test.txt", "train.txt", "val.txt"]
    assert not tensorflow


@pytest.mark.parametrize(
    "args",
    [("--sources=gtav:/nonexistent/GTAV",), ("--sources=nosuchdataset:/tmp",), ("--help",)],
    ids=["missing root", "unknown dataset", "help"],
)
def test_check_refuses_bad_usage_before_importing_tensorflow(args):
    status, tensorflow, stderr = probe("mgml_tf.data.check", *args)
    assert status == (0 if args == ("--help",) else 2), stderr
    assert not tensorflow
    if status:
        assert len(stderr.splitlines()) == 1 and stderr.startswith("mgml_tf.data.check: error: "), stderr


def test_importing_the_data_package_does_not_import_tensorflow():
    code = "import sys, mgml_tf.data; print('tensorflow' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["False"], proc.stderr


def test_every_exported_name_is_the_submodules():
    """``from mgml_tf.data import X`` for every name of ``__all__`` gives the object of the submodule that
    defines it; the submodules are attributes as after a plain import."""
    from mgml_tf.data import augment, datasets, episodes

    for name in mgml_tf.data.__all__:
        value = getattr(mgml_tf.data, name)
        owners = [m for m in (augment, datasets, episodes) if getattr(m, name, None) is value]
        assert owners or name in ("augment", "episodes"), name
    assert mgml_tf.data.episodes is episodes and mgml_tf.data.labels.IGNORE_ID == 255
    assert mgml_tf.data.KNOWN_DATASETS is mgml_tf.data.names.KNOWN_DATASETS
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        mgml_tf.data.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        from mgml_tf.data import no_such_name  # noqa: F401
