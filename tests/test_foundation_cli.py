"""A keras-hub ViT through the command line: configs/dinov2_tiny.cfg (``--backbone=PATH``, a local preset,
with the token adapter) trains, resumes exactly, and evaluates and exports from its model directory with the
preset gone; the export serves in a process without mgml_tf."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.cli_helpers import launch_workers, refused, run_cli, tiny_args
from tests.helpers import tiny_vit_preset

pytestmark = pytest.mark.slow  # training subprocesses


def vit_args(model_dir, synthetic_root, preset, *extra):
    return (
        "--flagfile=configs/dinov2_tiny.cfg",
        f"--backbone={preset}",
        f"--model_dir={model_dir}",
        f"--synthetic_root={synthetic_root}",
        "--deterministic",
        "--checkpoint_every=2",
        "--targets=",
        *extra,
    )


def _model_variables(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith("model/") and "OPTIMIZER" not in n]
    return {n: reader.get_tensor(n) for n in names}


def test_vit_preset_trains_resumes_exactly_and_serves_without_the_preset(tmp_path):
    preset = tiny_vit_preset(tmp_path / "preset", "dinov2", registers=2)
    synth = str(tmp_path / "synth")
    resumed, straight = str(tmp_path / "resumed"), str(tmp_path / "straight")
    run_cli("train", *vit_args(resumed, synth, preset, "--train_steps=2"), check=True)
    run_cli("train", *vit_args(resumed, synth, preset, "--train_steps=4"), check=True)
    run_cli("train", *vit_args(straight, synth, preset, "--train_steps=4"), check=True)
    a, b = _model_variables(resumed), _model_variables(straight)
    assert sorted(a) == sorted(b) and any("token_a" in n for n in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    with open(os.path.join(resumed, "backbone.json")) as f:
        assert json.load(f)["class_name"] == "DINOV2Backbone"

    shutil.rmtree(preset)  # from here on the model directory alone must do
    window = ("--sliding_window", "--window_size=32,48", "--eval_resize=48,96")  # non-square windows, resized
    proc = run_cli(
        "evaluate", f"--model_dir={resumed}", "--targets=synthetic", f"--synthetic_root={synth}", *window, check=True
    )
    assert "mIoU" in proc.stdout
    export_dir = str(tmp_path / "export")
    run_cli("export", f"--model_dir={resumed}", f"--export_dir={export_dir}", check=True)
    image = np.random.default_rng(0).integers(0, 256, size=(1, 40, 72, 3), dtype=np.uint8)
    np.save(tmp_path / "image.npy", image)
    script = (
        "import sys, numpy as np\n"
        "sys.modules['mgml_tf'] = None  # any import of mgml_tf would fail\n"
        "import tensorflow as tf\n"
        f"m = tf.saved_model.load({export_dir!r})\n"
        f"x = tf.constant(np.load({str(tmp_path / 'image.npy')!r}))\n"
        "probs = m.signatures['serving_default'](images=x)['probabilities']\n"
        f"np.save({str(tmp_path / 'probs.npy')!r}, probs.numpy())\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from mgml_tf.training import model_dir as md

    model, _, _ = md.build_from_dir(resumed)
    want = tf.nn.softmax(model(tf.constant(image, tf.float32)), axis=-1).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), want, atol=1e-5)


@pytest.mark.parametrize(
    "extra, words",
    [
        (("--backbone=/nonexistent/preset",), ("backbone preset directory", "not found")),
        (("--backbone=resnet_50_imagenet",), ("resnet backbone, not supported",)),
        (("--backbone=resnet18",), ("unknown backbone 'resnet18'",)),
        (("--backbone=resnet50", "--backbone_tuning=lora"), ("--backbone_tuning=lora needs a keras-hub backbone",)),
    ],
)
def test_bad_backbone_flags_are_one_line_and_write_nothing(tmp_path, extra, words):
    model_dir = tmp_path / "run"
    proc = run_cli("train", *tiny_args(str(model_dir), str(tmp_path / "synth"), *extra))
    refused(proc, *words)
    assert not model_dir.exists()


def test_two_workers_train_a_vit_to_the_same_state(tmp_path):
    """Multi-worker training (2 processes on loopback ports) of the tiny ViT with the token adapter: both
    workers end bit-identical; only the chief writes the model directory, backbone.json included."""
    preset = tiny_vit_preset(tmp_path / "preset", "dinov3", registers=4)
    model_dir, dump = tmp_path / "multi", tmp_path / "dump"
    # The synthetic domains first, by one process (workers starting together would race to write them).
    run_cli("train", *vit_args(tmp_path / "first", tmp_path / "synth", preset, "--train_steps=1"), check=True)
    args = vit_args(model_dir, tmp_path / "synth", preset, "--train_steps=2", "--batch_per_domain=2", "--dropout=0")
    proc = launch_workers(tmp_path / "worker_logs", *args, f"--debug_dump_variables={dump}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    w0, w1 = np.load(f"{dump}.worker_0.npz"), np.load(f"{dump}.worker_1.npz")
    assert int(w0["__step__"]) == int(w1["__step__"]) == 2
    assert any("token_a" in k for k in w0.files)
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
    assert "backbone.json" in os.listdir(model_dir) and not any(n.startswith("worker") for n in os.listdir(model_dir))
