"""``python -m mgml_tf.train`` under tf.distribute: mirrored on 2 logical CPU devices and 2 multi-worker
processes on loopback ports give the one-device model; bad distribution input is refused up front;
mixed_bfloat16 steps stay finite.

The model-level test (tests/test_distribution.py) proves exactness in float64 (1e-12). Here the point is
that the CLI wires it up (strategy scope, synchronised BN, replica batch layout, strategy.run, distributed
dataset, TF_CONFIG, chief-only writes), in the CLI's float32. Measured on this machine (2 CPU cores, TF
2.21), largest absolute difference of any weight, BN statistic or memory entry against one device:
~1e-7 after 1 step, ~5e-6 after 3 steps (reduction-order rounding, slightly amplified by training).
Tolerance: 1e-6 after step 1 and 5e-5 after step 2, while one step moves the variables by ~1e-2 and
a wiring fault (a replica seeing only some domains, unsynchronised BN or memory, a per-replica loss
normalisation) changes them by the order of a step, 1e-3 or more.

Step 3 is not compared: with ``--deterministic`` (op determinism on) the one-device run's step 3 differs
from the mirrored one by 1.1e-3 (1.3e-6 without op determinism), and the same 1.1e-3 at step 3 appeared
earlier from tracing the one-device step with an unknown batch size. Two unrelated rounding changes giving
the same jump at the same step of this tiny run point to one discrete event on its trajectory (a ReLU input
within float32 rounding of zero flips sides, which changes the gradient by a whole unit's contribution).
Exactness over three steps is the float64 model-level test's job (1e-12).

Every run here uses BatchNorm's two-pass moments (``MGML_TF_BATCH_NORM=two_pass``): synchronised BatchNorm
across replicas always does, while one device would otherwise take the fused kernel, whose different rounding
this tiny run amplifies to 2e-4 by step 2 (the same amplification that moves float32 meta-gradients of the
small test model by percents under a 1e-6 change of the input; tests/test_convolution.py). What is compared
is then the wiring alone, with only the order of reductions differing.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.cli_helpers import REPO, env, launch_workers, refused, run_cli, tiny_args

# 2 images per domain (divisible by 2 replicas), no dropout (its masks are drawn per replica), a fixed
# batch order, no evaluation (not what is compared), a checkpoint after every step.
COMMON = (
    "--batch_per_domain=2",
    "--dropout=0",
    "--deterministic",
    "--targets=",
    "--checkpoint_every=1",
    "--keep_checkpoints=3",
    "--memory_init_batches=1",
)
STEP1_TOL, TOL = 1e-6, 5e-5


def _checkpoint(model_dir, step):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints", f"ckpt-{step}"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith("model/")}


def _max_abs_diff(a, b):
    assert sorted(a) == sorted(b)
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - b[k]))) for k in a if np.size(a[k]))


@pytest.fixture(scope="module", autouse=True)
def _two_pass_batch_norm():
    """The child processes inherit ``MGML_TF_BATCH_NORM=two_pass`` (see the module docstring)."""
    previous = os.environ.get("MGML_TF_BATCH_NORM")
    os.environ["MGML_TF_BATCH_NORM"] = "two_pass"
    yield
    if previous is None:
        del os.environ["MGML_TF_BATCH_NORM"]
    else:
        os.environ["MGML_TF_BATCH_NORM"] = previous


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """3 steps on one device (also generates the tiny synthetic suite shared by the other runs)."""
    root = tmp_path_factory.mktemp("dist")
    synth, model_dir = root / "synth", root / "one"
    proc = run_cli(
        "train",
        *tiny_args(
            str(model_dir),
            str(synth),
            *COMMON,
            "--distribution_strategy=one_device",
            f"--debug_dump_variables={root / 'one_dump'}",
        ),
        check=True,
    )
    assert "replicas" not in proc.stdout
    return root, synth, model_dir


@pytest.mark.slow  # two training subprocesses
def test_mirrored_two_devices_equals_one_device(reference):
    root, synth, one = reference
    model_dir = root / "mirrored"
    proc = run_cli(
        "train",
        *tiny_args(
            str(model_dir),
            str(synth),
            *COMMON,
            "--distribution_strategy=mirrored",
            "--num_devices=2",
            f"--debug_dump_variables={root / 'mirrored_dump'}",
        ),
        check=True,
    )
    assert "MirroredStrategy, 2 replicas" in proc.stdout and "BatchNorm moments two_pass" in proc.stdout
    dump = np.load(f"{root / 'mirrored_dump'}.single.npz")
    assert float(dump["__replicas_max_abs_diff__"]) == 0.0  # both replicas hold the same state
    with open(model_dir / "flags.json") as f:
        assert json.load(f)["options"]["synchronized_bn"] is True
    moved = _max_abs_diff(_checkpoint(one, 1), _checkpoint(one, 2))
    assert moved > 1e-3  # a step changes the model far beyond the tolerance: the comparison is not vacuous
    for step, tol in ((1, STEP1_TOL), (2, TOL)):
        a, b = _checkpoint(one, step), _checkpoint(model_dir, step)
        assert any("memory" in k for k in a)
        diff = _max_abs_diff(a, b)
        assert diff < tol, (step, diff)


@pytest.mark.slow  # two worker subprocesses
def test_two_workers_equal_each_other_and_one_device(reference):
    root, synth, one = reference
    model_dir, dump = root / "multi", root / "multi_dump"
    proc = launch_workers(
        root / "worker_logs",
        *tiny_args(str(model_dir), str(synth), *COMMON, "--train_steps=2", f"--debug_dump_variables={dump}"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 replicas, task worker:0 (chief)" in proc.stdout
    w0, w1 = np.load(f"{dump}.worker_0.npz"), np.load(f"{dump}.worker_1.npz")
    assert int(w0["__step__"]) == int(w1["__step__"]) == 2
    for k in w0.files:  # both workers end bit-identical
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
    # Only the chief wrote to model_dir; the other worker's scratch folder is gone.
    assert sorted(os.listdir(model_dir)) == [".writer.lock", "checkpoints", "eval", "flags.cfg", "flags.json", "train"]
    for step, tol in ((1, STEP1_TOL), (2, TOL)):
        diff = _max_abs_diff(_checkpoint(one, step), _checkpoint(model_dir, step))
        assert diff < tol, (step, diff)


@pytest.mark.slow  # a subprocess per case
@pytest.mark.parametrize(
    "extra, tf_config, words",
    [
        (("--distribution_strategy=parallel",), None, ("parallel", "one_device, mirrored, multi_worker")),
        (("--distribution_strategy=mirrored", "--num_devices=2"), None, ("batch_per_domain=1", "2 replicas")),
        (("--distribution_strategy=multi_worker",), "{not json", ("TF_CONFIG", "JSON")),
        (("--distribution_strategy=multi_worker",), '{"task": {"type": "worker", "index": 0}}', ("cluster",)),
        (
            ("--distribution_strategy=multi_worker",),
            '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 2}}',
            ("index", "0..1"),
        ),
        (
            ("--distribution_strategy=mirrored", "--num_devices=2", "--batch_per_domain=2", "--jit_compile"),
            None,
            ("jit_compile", "one device"),
        ),
        (("--mixed_precision=float8",), None, ("float8", "mixed_bfloat16")),
    ],
)
def test_bad_distribution_input_refused(tmp_path, extra, tf_config, words):
    model_dir, synth = tmp_path / "run", tmp_path / "synth"
    e = env()
    e.pop("TF_CONFIG", None)
    if tf_config is not None:
        e["TF_CONFIG"] = tf_config
    proc = subprocess.run(
        [sys.executable, "-m", "mgml_tf.train", *tiny_args(str(model_dir), str(synth), *extra)],
        cwd=REPO,
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )
    refused(proc, *words)
    assert not model_dir.exists() and not synth.exists()


@pytest.mark.slow  # a training subprocess
def test_mixed_bfloat16_two_steps_finite(reference):
    root, synth, _ = reference
    model_dir = root / "bf16"
    proc = run_cli(
        "train",
        *tiny_args(str(model_dir), str(synth), *COMMON, "--train_steps=2", "--mixed_precision=mixed_bfloat16"),
        check=True,
    )
    assert "compute bfloat16, variables float32, memory float32" in proc.stdout
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 2 and steps[-1].startswith("step 2/2")
    values = [float(tok) for line in steps for tok in line.split()[2::2] if tok.replace(".", "").isdigit()]
    assert values and all(np.isfinite(values))
    state = _checkpoint(model_dir, 2)
    memory = [v for k, v in state.items() if "memory" in k and v.ndim == 2 and v.shape[0] == 19]
    assert memory and memory[0].dtype == np.float32
    assert all(np.all(np.isfinite(v)) for v in state.values() if np.asarray(v).dtype.kind == "f")


@pytest.mark.parametrize(
    "value, words",
    [
        ("[1, 2]", ("JSON object",)),
        ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}', ("host:port",)),
        ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', ("no worker or chief",)),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "evaluator", "index": 0}}', ("chief, worker",)),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}', ("not a job",)),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": -1}}', ("0..0",)),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker"}}', ("index",)),
    ],
)
def test_validate_tf_config(value, words):
    from mgml_tf import distribution

    with pytest.raises(ValueError) as info:
        distribution.validate_tf_config({"TF_CONFIG": value})
    message = str(info.value)
    assert "\n" not in message
    for w in words:
        assert w in message, message


def test_validate_tf_config_accepts_chief_and_workers():
    from mgml_tf import distribution

    config = {"cluster": {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}, "task": {"type": "worker", "index": 1}}
    assert distribution.validate_tf_config({"TF_CONFIG": json.dumps(config)}) == config
    assert distribution.cluster_size(config) == 3
    assert distribution.validate_tf_config({}) is None
