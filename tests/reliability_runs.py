"""Short training runs shared by tests/test_determinism.py and tests/test_reliability_faults.py.

configs/demo_tiny.cfg on two synthetic source domains (every episode is then one domain against the other:
one traced step shape, so a run costs one trace), no targets (no evaluation), --deterministic, a progress
line and a checkpoint every step. Runs are subprocesses that may run side by side (the machine has 2
cores); the uninterrupted reference run is started once per pytest process and shared.
"""

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from mgml_tf.training import checkpoints
from tests.cli_helpers import REPO, env, tiny_args

STEPS = 8
KEEP_ALL = "--keep_checkpoints=100"
_ROOT = None
_RUNS = {}


def root():
    """A folder for the shared runs (removed when the pytest process exits); the synthetic suite is there."""
    global _ROOT
    if _ROOT is None:
        _ROOT = tempfile.mkdtemp(prefix="mgml_reliability_")
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


def synth():
    return os.path.join(root(), "synth")


def args(model_dir, *extra, steps=STEPS):
    return tiny_args(
        model_dir,
        synth(),
        "--targets=",
        "--sources=synthetic:sunny_game,synthetic:overcast_sim",
        "--deterministic",
        "--log_every=1",
        "--checkpoint_every=1",
        "--keep_checkpoints=3",
        "--memory_init_batches=1",
        f"--train_steps={steps}",
        *extra,
    )


class Run:
    """``python -m mgml_tf.train ARGS`` started in the background; ``wait()`` returns (rc, stdout, stderr)."""

    def __init__(self, model_dir, *extra, steps=STEPS, fault=None):
        ensure_synthetic()
        e = env()
        e.pop(checkpoints.FAULT_ENV, None)
        if fault:
            e[checkpoints.FAULT_ENV] = fault
        self.model_dir = model_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mgml_tf.train", *args(model_dir, *extra, steps=steps)],
            cwd=REPO,
            env=e,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.result = None

    def wait(self, timeout=600):
        if self.result is None:
            out, err = self.proc.communicate(timeout=timeout)
            self.result = (self.proc.returncode, out, err)
        return self.result

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)


def started(name, *extra, steps=STEPS, fault=None):
    """The run ``name`` (started on the first call, shared afterwards)."""
    if name not in _RUNS:
        _RUNS[name] = Run(os.path.join(root(), name), *extra, steps=steps, fault=fault)
    return _RUNS[name]


def ensure_synthetic():
    """Generates the synthetic suite of configs/demo_tiny.cfg once, in this process (runs started side by
    side must not both generate it)."""
    from types import SimpleNamespace

    from mgml_tf.training import data as data_lib

    fv = SimpleNamespace(
        synthetic_root=synth(), synthetic_num_train=4, synthetic_num_val=2, synthetic_height=64, synthetic_width=128
    )
    data_lib.synthetic_suite(fv, log=lambda message: None)


def reference():
    """The uninterrupted run (shared by the determinism and fault tests); it keeps every checkpoint."""
    return started("reference", KEEP_ALL)


def logged_scalars(model_dir):
    """``{(tag, step): float32 value}`` of the TensorBoard training summaries (the exact logged values)."""
    out = {}
    folder = os.path.join(model_dir, "train")
    for name in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                out[(value.tag, int(event.step))] = tf.make_ndarray(value.tensor)
    return out


def losses(stdout):
    """``{step: progress line text after the step}``: every logged loss, as printed."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"step (\d+)/\d+  (loss .*?)  lr ", line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def state(model_dir):
    """Checkpoint prefixes listed in the ``checkpoint`` state file (oldest first), and the newest."""
    st = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    if st is None:
        return [], None
    return list(st.all_model_checkpoint_paths), st.model_checkpoint_path


def tensors(path):
    """``{key: array}`` of every variable of a checkpoint (reading each one: a truncated file raises)."""
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def assert_same_variables(a, b, ignore=("save_counter",)):
    """Bit-identical checkpoints (same keys, same values), apart from the keys containing ``ignore``."""
    ta, tb = tensors(a), tensors(b)
    assert set(ta) == set(tb)
    different = [k for k in ta if not any(i in k for i in ignore) and not np.array_equal(ta[k], tb[k])]
    assert not different, f"{a} vs {b}: {different[:5]} ({len(different)} differ)"
    return ta


def step_of(path):
    return checkpoints.checkpoint_step(path)
