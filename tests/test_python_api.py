"""The README's Python example, on a tiny synthetic set in two published layouts."""

import numpy as np
import pytest

import mgml_tf
from mgml_tf.data import load_domain
from mgml_tf.data.augment import GEOMETRY_ONLY
from mgml_tf.data.episodes import aggregated_batches, episodes
from mgml_tf.synthetic.streets import write_dataset

# The README's Python example, trained end to end.
pytestmark = pytest.mark.slow


def test_readme_python_example(tmp_path):
    write_dataset("sunny_game", "gtav", 4, str(tmp_path / "GTAV"), height=64, width=128)
    write_dataset("overcast_sim", "synthia", 4, str(tmp_path / "SYNTHIA"), height=64, width=128)
    sources = [load_domain("gtav", str(tmp_path / "GTAV")), load_domain("synthia", str(tmp_path / "SYNTHIA"))]
    model = mgml_tf.build_model(
        backbone="resnet_small",
        head="deeplabv3plus",
        num_classes=19,
        feature_channels=16,
        decoder_channels=16,
        method="mgml",
        meta_order=2,
    )
    memory = model.initialize_memory(aggregated_batches(sources, 2, 64, augment_config=GEOMETRY_ONLY), max_batches=3)
    assert np.isfinite(memory.numpy()).all() and np.abs(memory.numpy()).max() > 0
    history = model.fit(
        episodes(sources, batch_per_domain=2, crop_size=64, seed=0), steps_per_epoch=3, epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][-1])
    images = np.zeros((1, 64, 96, 3), np.float32)
    assert model(images).shape == (1, 64, 96, 19)
    probabilities, memory_weights = model.predict_with_weights(images)
    assert memory_weights.shape == (1, 64, 96, 19)
