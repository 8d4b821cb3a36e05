"""The demo configuration shortened to a few steps (configs/demo_tiny.cfg) through train, evaluate, export
and predict as subprocesses; the outputs are checked, and a model_dir of another configuration is refused."""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.cli_helpers import run_cli, stderr_lines, tiny_args

# One training subprocess shared by the module, then each command run as a subprocess.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    model_dir, synth = str(base / "run"), str(base / "synth")
    proc = run_cli("train", *tiny_args(model_dir, synth), check=True)
    return {"base": base, "model_dir": model_dir, "synth": synth, "train": proc}


def test_train_outputs(run):
    out, model_dir = run["train"].stdout, run["model_dir"]
    assert "memory initialised" in out and "step 3/3" in out and "img/s" in out and "ETA" in out
    from mgml_tf.layers import dilated_convolution_path

    assert (
        f"kernels (float32): dilated convolutions {dilated_convolution_path('float32')}, BatchNorm moments fused"
    ) in out
    for name in (
        "flags.cfg",
        "flags.json",
        "eval_results.json",
        "checkpoints/checkpoint",
        "checkpoints/ckpt-2.index",
        "checkpoints/ckpt-3.index",
    ):
        assert os.path.exists(os.path.join(model_dir, name)), name
    results = json.load(open(os.path.join(model_dir, "eval_results.json")))
    assert len(results) == 3
    for target, r in results.items():
        assert 0.0 <= r["mIoU"] <= 100.0 and r["num_images"] == 2 and len(r["IoU"]) == 19
        assert all(v is None or 0.0 <= v <= 100.0 for v in r["IoU"].values())
        assert target in out  # the per-target table was printed
    config = json.load(open(os.path.join(model_dir, "flags.json")))
    assert config["options"]["backbone"] == "resnet_small" and config["options"]["train_steps"] == 3
    assert "--train_steps=3" in open(os.path.join(model_dir, "flags.cfg")).read()


def test_summaries_written(run):
    from mgml_tf.training.summaries import read_events

    train = read_events(os.path.join(run["model_dir"], "train"))
    assert {"loss/loss", "loss/cohesion", "learning_rate/lr", "learning_rate/inner_lr"} <= set(train)
    evals = read_events(os.path.join(run["model_dir"], "eval"))
    assert any(t.startswith("mIoU/") for t in evals)
    assert any(t.endswith("/memory_weights") for t in evals) and any(t.endswith("/prediction") for t in evals)


def test_evaluate_json_and_cityscapes_pngs(run, tmp_path):
    out_json, preds = str(tmp_path / "ev.json"), str(tmp_path / "preds")
    proc = run_cli(
        "evaluate",
        f"--model_dir={run['model_dir']}",
        f"--output_json={out_json}",
        f"--save_predictions={preds}",
        "--flip",
        check=True,
    )
    results = json.load(open(out_json))
    assert set(results) == set(json.load(open(os.path.join(run["model_dir"], "eval_results.json"))))
    for r in results.values():
        assert 0.0 <= r["mIoU"] <= 100.0 and r["num_images"] == 2
    assert "mIoU" in proc.stdout
    pngs = glob.glob(os.path.join(preds, "cityscapes_foggy", "*_labelIds.png"))
    assert len(pngs) == 2
    ids = tf.io.decode_png(tf.io.read_file(pngs[0])).numpy()
    valid_label_ids = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    assert set(np.unique(ids).tolist()) <= valid_label_ids
    # 16-class protocol
    proc = run_cli(
        "evaluate",
        f"--model_dir={run['model_dir']}",
        f"--output_json={out_json}",
        "--num_classes_protocol=16",
        "--max_eval_images=1",
        check=True,
    )
    for r in json.load(open(out_json)).values():
        assert r["protocol"] == 16 and "terrain" not in r["IoU"] and r["num_images"] == 1


def test_export_reloads_without_mgml_tf_and_agrees(run, tmp_path):
    export_dir = str(tmp_path / "export")
    run_cli("export", f"--model_dir={run['model_dir']}", f"--export_dir={export_dir}", check=True)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(2, 70, 90, 3), dtype=np.uint8)
    np.save(tmp_path / "image.npy", image)
    script = (
        "import sys, json, numpy as np\n"
        "sys.modules['mgml_tf'] = None  # any import of mgml_tf would fail\n"
        "import tensorflow as tf\n"
        f"m = tf.saved_model.load({export_dir!r})\n"
        f"x = np.load({str(tmp_path / 'image.npy')!r})\n"
        "out = m.signatures['serving_default'](images=tf.constant(x))\n"
        "w = m.signatures['memory_weights'](images=tf.constant(x))['memory_weights']\n"
        f"np.save({str(tmp_path / 'probs.npy')!r}, out['probabilities'].numpy())\n"
        "errors = []\n"
        "bads = (tf.zeros([1, 8, 8, 3], tf.float32), tf.zeros([8, 8, 3], tf.uint8), tf.zeros([1, 8, 8, 4], tf.uint8))\n"
        "for bad in bads:\n"
        "    try:\n"
        "        m.signatures['serving_default'](images=bad)\n"
        "    except (TypeError, ValueError, tf.errors.InvalidArgumentError):\n"
        "        errors.append(1)\n"
        "print(json.dumps({'labels': [out['labels'].dtype.name] + out['labels'].shape.as_list(),\n"
        "                  'weights': w.shape.as_list(), 'refused': len(errors),\n"
        "                  'mgml': [k for k in sys.modules\n"
        "                           if k.startswith('mgml_tf') and sys.modules[k] is not None]}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=str(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["labels"] == ["uint8", 2, 70, 90] and info["weights"] == [2, 70, 90, 19]
    assert info["refused"] == 3 and info["mgml"] == []
    from mgml_tf.training import model_dir as md

    model, _, _ = md.build_from_dir(run["model_dir"])
    want = tf.nn.softmax(model(tf.constant(image, tf.float32)), axis=-1).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), want, atol=1e-5)
    cli = shutil.which("saved_model_cli")
    if cli:
        show = subprocess.run([cli, "show", "--all", "--dir", export_dir], capture_output=True, text=True, timeout=300)
        assert show.returncode == 0 and "serving_default" in show.stdout and "memory_weights" in show.stdout


def test_predict_from_export_and_model_dir(run, tmp_path):
    export_dir = str(tmp_path / "export")
    run_cli("export", f"--model_dir={run['model_dir']}", f"--export_dir={export_dir}", check=True)
    images = os.path.join(run["synth"], "foggy", "leftImg8bit")
    out1, out2 = str(tmp_path / "p1"), str(tmp_path / "p2")
    run_cli("predict", f"--export_dir={export_dir}", f"--input={images}", f"--output_dir={out1}", check=True)
    single = sorted(glob.glob(os.path.join(images, "*", "*", "*.png")))[0]
    run_cli(
        "predict",
        f"--model_dir={run['model_dir']}",
        f"--input={single}",
        f"--output_dir={out2}",
        "--memory_classes=road,sky",
        check=True,
    )
    colors = glob.glob(os.path.join(out1, "**", "*_color.png"), recursive=True)
    assert len(colors) == 2
    for suffix in ("_color.png", "_overlay.png", "_trainIds.png"):
        assert len(glob.glob(os.path.join(out1, "**", "*" + suffix), recursive=True)) == 2
    maps = glob.glob(os.path.join(out1, "**", "*_memory", "*.png"), recursive=True)
    assert maps
    for path in colors + maps:
        image = tf.io.decode_png(tf.io.read_file(path)).numpy()
        assert image.shape == (64, 128, 3)
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(out2, "*_memory", "*.png"))) == [
        "road.png",
        "sky.png",
    ]


def test_predict_unreadable_image_writes_nothing(run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = sorted(glob.glob(os.path.join(run["synth"], "foggy", "leftImg8bit", "*", "*", "*.png")))[0]
    shutil.copy(good, inputs / "a.png")
    (inputs / "b.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    proc = run_cli("predict", f"--model_dir={run['model_dir']}", f"--input={inputs}", f"--output_dir={out}")
    assert proc.returncode != 0
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "b.png" in lines[0], proc.stderr
    assert not out.exists()


def test_model_dir_of_other_num_classes_refused(run, tmp_path):
    # 1. Same model_dir, another configuration: refused from the saved flags, nothing changes.
    before = open(os.path.join(run["model_dir"], "flags.json")).read()
    proc = run_cli("train", *tiny_args(run["model_dir"], run["synth"], "--num_classes=20"))
    assert proc.returncode != 0
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "num_classes" in lines[0], proc.stderr
    assert open(os.path.join(run["model_dir"], "flags.json")).read() == before
    # 2. Checkpoints without the saved flags (copied by hand): refused by the checkpoint's shapes.
    other = str(tmp_path / "copied")
    shutil.copytree(os.path.join(run["model_dir"], "checkpoints"), os.path.join(other, "checkpoints"))
    proc = run_cli("train", *tiny_args(other, run["synth"], "--num_classes=20"))
    assert proc.returncode != 0
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "num_classes" in lines[0], proc.stderr
    assert sorted(os.listdir(other)) == ["checkpoints"]
