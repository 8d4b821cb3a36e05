"""`model.fit` runs Algorithm 1 in user code: it lowers the meta-test loss for every method and does not
retrace step after step."""

import keras
import numpy as np
import pytest

from mgml_tf import losses
from tests.helpers import episode_dataset, scene_batch, small_model

METHODS = [
    dict(method="baseline"),
    dict(method="mldg", meta_order=1),
    pytest.param(dict(method="memory_agg"), marks=pytest.mark.slow),
    dict(method="mgml", meta_order=1),
    pytest.param(dict(method="mgml", meta_order=2), marks=pytest.mark.slow),  # second order: the longest
]


def held_out_loss(model, batches):
    return float(np.mean([losses.segmentation_loss(y, model(x)).numpy() for x, y in batches]))


@pytest.mark.parametrize("options", METHODS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_fit_lowers_meta_test_loss(options):
    model = small_model(learning_rate=0.05, lr_schedule="constant", **options)
    rng = np.random.default_rng(123)
    held_out = [scene_batch(rng, 4, 32, domain) for domain in (0, 1)]
    if model.use_memory:
        model.initialize_memory(held_out[:1])
    before = held_out_loss(model, held_out)
    history = model.fit(episode_dataset(0, 40), epochs=1, verbose=0)
    after = held_out_loss(model, held_out)
    assert after < 0.8 * before, (before, after)
    logs = history.history
    key = "loss"
    assert np.isfinite(logs[key][-1])
    if options["method"] in ("mgml", "mldg"):
        assert "outer_seg" in logs and "inner_seg" in logs


class TraceCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.counts = []

    def on_train_batch_end(self, batch, logs=None):
        self.counts.append(self.model.train_step_traces)


def test_no_retracing_when_meta_train_size_changes():
    """The first call traces (tf.function may trace twice while it lifts variables created on the first
    trace); after that, steps with different meta-train sizes reuse the graph."""
    model = small_model(meta_order=1)
    counter = TraceCounter()
    model.fit(episode_dataset(1, 8, vary_batch=True), epochs=2, verbose=0, callbacks=[counter])
    assert len(counter.counts) == 16
    assert counter.counts[0] <= 2 and len(set(counter.counts)) == 1, counter.counts
