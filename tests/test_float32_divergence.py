"""float32: one training step mirrored over 2 logical CPU replicas against one device, measured against the
floor a change of summation order reaches (docs/DISTRIBUTED.md, "float32: mirrored against one device, step by
step").

The tolerance is measured in the same run, not typed in: ``tools.float32_divergence`` also trains the step on
one device with the batch's images in reverse order (the same sums in another order, no replicas). A wiring
fault (BatchNorm moments taken per replica, which ``synchronized_bn=True`` prevents) must land far above
that floor. The mirrored step itself does not yet stay within it in this model-level harness (it lands ~4000x
above, in the BatchNorm offsets, while the CLI's mirrored run is within 1e-6 of one device: the docs section
says what was ruled out): that test is an expected failure until the cause is found. Exactness in float64 is
tests/test_distribution.py's.
"""

import json
import subprocess
import sys

import pytest

from tests.cli_helpers import REPO, env

pytestmark = pytest.mark.slow  # one subprocess training 4 models for one step (1-3 min on 2 cores)

# How far above the reordering floor a step may land and still count as rounding.
FLOOR_FACTOR = 10
KEYS = ("probabilities", "trainable", "memory")


@pytest.fixture(scope="module")
def first_step(tmp_path_factory):
    """``{run: its first-step row}`` and the reference step's largest weight change (tiny demo, 2 images per
    domain, one step)."""
    root = tmp_path_factory.mktemp("float32_divergence")
    out_json = root / "divergence.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.float32_divergence",
            "--flagfile=configs/demo_tiny.cfg",
            f"--synthetic_root={root / 'synth'}",
            "--batch_per_domain=2",
            "--targets=",
            "--steps=1",
            "--runs=mirrored",
            "--runs=permuted",
            "--runs=mirrored_local_bn",
            f"--output_json={out_json}",
        ],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out_json.read_text())
    return {name: rows[0] for name, rows in report["runs"].items()}, report["first_step_moves_weights_by"]


def test_a_per_replica_batch_norm_fault_lands_far_above_the_reordering_floor(first_step):
    runs, moved = first_step
    permuted, fault = runs["permuted"], runs["mirrored_local_bn"]
    assert FLOOR_FACTOR * permuted["trainable"] < 1e-3 * moved  # the floor is far below one step
    assert fault["replicas_disagree"] == 0.0  # the replicas hold the same state even so
    for key in KEYS:
        assert fault[key] > 100 * FLOOR_FACTOR * permuted[key], (key, fault[key], permuted[key])


@pytest.mark.xfail(strict=True, reason="open: the harness's mirrored step lands ~4000x above the floor")
def test_one_mirrored_step_stays_within_the_reordering_floor(first_step):
    runs, _ = first_step
    mirrored, permuted = runs["mirrored"], runs["permuted"]
    assert mirrored["replicas_disagree"] == 0.0
    for key in KEYS:
        assert mirrored[key] <= FLOOR_FACTOR * permuted[key], (key, mirrored[key], permuted[key])
