"""Training under MirroredStrategy equals training on one device (docs/DESIGN.md#distribution-traps)."""

import json
import os
import subprocess
import sys

import pytest

# Each test trains a mirrored and a one-device model side by side (about a minute each).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "meta_order, vit",
    [(1, None), (2, None), (2, "lora")],
    ids=["1", "2", "vit_lora-2"],
)
def test_mirrored_two_replicas_equal_one_device(meta_order, vit, tmp_path):
    """3 steps of first- or second-order MGML on 2 logical CPU replicas vs one device, same global batches.

    Run in float64: rounding noise is then ~1e-15 relative, so any real difference in the algorithm (a
    missing all-reduce of the memory's class sums or of the inner gradient, a loss normalised per replica,
    weight decay counted per replica, BatchNorm statistics or memory drifting between replicas) shows up
    many orders of magnitude above the 1e-9 tolerance. (In float32 the same comparison differs by up to
    ~5e-3 relative after 3 steps: rounding differences of reduction order, amplified by training.)"""
    extra = []
    if vit:  # a tiny keras-hub DINOv2 with registers, tuned by LoRA
        from tests.helpers import tiny_vit_preset

        extra = [tiny_vit_preset(tmp_path / "preset", "dinov2", registers=2), vit]
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "distributed_equivalence.py"), str(meta_order), "float64", *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["moved"] > 1e-2  # training changed the model: the comparison is not vacuous
    assert result["replicas_agree"] == 0.0  # every replica holds the same state
    for key in ("trainable", "non_trainable", "memory", "optimizer"):
        assert result[key] < 1e-9, (key, result)
