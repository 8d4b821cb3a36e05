"""--deterministic: two runs with the same seed log bit-identical losses and end with bit-identical
variables (weights, BatchNorm statistics, memory, dropout seed state, optimiser slots) on CPU."""

import os

import numpy as np
import pytest

from tests import reliability_runs as rr

# Two full training runs compared bit for bit.
pytestmark = pytest.mark.slow


def test_two_deterministic_runs_are_bit_identical():
    first, second = rr.reference(), rr.started("second", rr.KEEP_ALL)  # side by side
    (rc1, out1, err1), (rc2, out2, err2) = first.wait(), second.wait()
    assert rc1 == 0 and rc2 == 0, err1 + err2
    assert "deterministic: op determinism on, seed 0" in out1
    losses = rr.losses(out1)
    assert sorted(losses) == list(range(1, rr.STEPS + 1)) and losses == rr.losses(out2)
    # The logged float32 values themselves (TensorBoard summaries), not only their printed digits.
    logged1, logged2 = rr.logged_scalars(first.model_dir), rr.logged_scalars(second.model_dir)
    for logged in (logged1, logged2):  # wall-clock speed: the one summary that may differ
        for key in [k for k in logged if k[0] == "images_per_second"]:
            del logged[key]
    assert ("loss/loss", rr.STEPS) in logged1 and set(logged1) == set(logged2)
    for key, value in logged1.items():
        assert value.tobytes() == logged2[key].tobytes(), key
    # Every kept checkpoint, bit for bit (only the manager's save counter is left out: it is the same too).
    listed1, newest1 = rr.state(first.model_dir)
    listed2, _ = rr.state(second.model_dir)
    assert rr.step_of(newest1) == rr.STEPS and len(listed1) == rr.STEPS
    assert [os.path.basename(p) for p in listed1] == [os.path.basename(p) for p in listed2]
    for a, b in zip(listed1, listed2):
        values = rr.assert_same_variables(a, b, ignore=())
    assert any("memory" in k for k in values) and any("momentum" in k for k in values)
    assert all(np.all(np.isfinite(v)) for v in values.values() if v.dtype.kind == "f")
