"""Shareable presets (mgml_tf.training.preset, python -m mgml_tf.preset): the round trip is bit-identical
(predictions, memory, every variable), evaluate/predict/export/train take --preset, and every damaged or foreign
preset, ambiguous source and occupied destination is refused in one line with nothing on disk changed.

One tiny training run (configs/demo_tiny.cfg, method memory_agg so that it has a memory, 1 step) and its preset
are shared by the module; the commands run in-process (their subprocess path is the one of the other tools)."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import mgml_tf
from mgml_tf.errors import RunError, UsageError
from mgml_tf.training import model_dir as md
from mgml_tf.training import preset as preset_lib
from tests.cli_helpers import run_cli, tiny_args
from tests.test_bad_input import tree_hash

QUIET = dict(log=lambda message: None)
#: The data flags of configs/demo_tiny.cfg: all that fine-tuning its preset needs besides --sources.
TINY_DATA = (
    "--synthetic_num_train=4",
    "--synthetic_num_val=2",
    "--synthetic_height=64",
    "--synthetic_width=128",
    "--crop_size=64",
    "--batch_per_domain=1",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("preset")
    model_dir, synth = str(base / "run"), str(base / "synth")
    run_cli(
        "train",
        *tiny_args(model_dir, synth, "--method=memory_agg", "--train_steps=1", "--checkpoint_every=1"),
        check=True,
    )
    preset_dir = str(base / "preset")
    preset_lib.pack(model_dir, preset_dir, **QUIET)
    return {"base": base, "model_dir": model_dir, "synth": synth, "preset": preset_dir}


def values(model):
    """Every variable's bytes in the model's order (the paths of the dropout layers' random states are numbered
    per process)."""
    return [v.numpy().tobytes() for v in model.variables]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def damaged_copy(run, tmp_path, name="copy"):
    """A copy of the module's preset that a test may damage."""
    return shutil.copytree(run["preset"], str(tmp_path / name))


def rewrite(preset_dir, name, value):
    """Replaces the JSON file ``name`` and its manifest entry (size, sha256): a preset consistent with its manifest
    whose content is ``value``."""
    path = os.path.join(preset_dir, name)
    with open(path, "w") as f:
        json.dump(value, f)
    manifest = read_json(os.path.join(preset_dir, preset_lib.MANIFEST))
    with open(path, "rb") as f:
        data = f.read()
    manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    with open(os.path.join(preset_dir, preset_lib.MANIFEST), "w") as f:
        json.dump(manifest, f)


# --------------------------------------------------------------------------------------------- round trip
def test_round_trip_gives_bit_identical_predictions_memory_and_variables(run):
    original, _, checkpoint = md.build_from_dir(run["model_dir"], **QUIET)
    loaded = mgml_tf.from_preset(run["preset"])
    assert isinstance(loaded, mgml_tf.MemorySegmenter) and loaded.use_memory
    assert values(loaded) == values(original)
    assert np.array_equal(original.memory.numpy(), loaded.memory.numpy())
    assert np.any(original.memory.numpy())  # a written memory, not the zeros a fresh model has
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, 40, 56, 3)), tf.float32)
    assert np.array_equal(original(images).numpy(), loaded(images).numpy())
    for a, b in zip(original.predict_with_weights(images), loaded.predict_with_weights(images)):
        assert np.array_equal(a.numpy(), b.numpy())
    # Ready to fine-tune: compiled with a fresh optimiser at step 0.
    assert loaded.optimizer is not None and int(loaded.optimizer.iterations.numpy()) == 0

    step = int(original.optimizer.iterations.numpy())
    metadata = read_json(os.path.join(run["preset"], preset_lib.METADATA))
    assert metadata["format_version"] == preset_lib.FORMAT_VERSION and metadata["step"] == step
    assert metadata["mgml_tf_version"] == mgml_tf.__version__
    training = read_json(os.path.join(run["preset"], preset_lib.TRAINING))
    assert training["step"] == step and training["checkpoint"] == os.path.basename(checkpoint)
    assert training["flags"] == md.load_config(run["model_dir"])["flags"]
    assert read_json(os.path.join(run["preset"], preset_lib.EVALUATION)) == read_json(
        os.path.join(run["model_dir"], md.EVAL_JSON)
    )
    labels = read_json(os.path.join(run["preset"], preset_lib.LABELS))
    assert len(labels["class_names"]) == len(labels["palette"]) == original.num_classes


def test_the_manifest_lists_every_file_with_its_size_and_sha256(run):
    manifest = read_json(os.path.join(run["preset"], preset_lib.MANIFEST))["files"]
    names = sorted(n for n in os.listdir(run["preset"]) if n != preset_lib.MANIFEST)
    assert sorted(manifest) == names
    assert preset_lib.WEIGHTS in names and preset_lib.CONFIG in names
    for name in names:
        with open(os.path.join(run["preset"], name), "rb") as f:
            data = f.read()
        assert manifest[name] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# ------------------------------------------------------------------------------------------ the commands
@pytest.mark.slow
def test_evaluate_and_export_through_the_preset(run, tmp_path):
    """evaluate gives through --preset what it gives through the model directory; the export of the preset serves
    the preset's model."""
    from mgml_tf.cli import evaluate, export

    for source in ("model_dir", "preset"):
        evaluate.main(["prog", f"--{source}={run[source]}", f"--output_json={tmp_path}/{source}.json"])
    assert read_json(f"{tmp_path}/preset.json") == read_json(f"{tmp_path}/model_dir.json")

    export_dir = str(tmp_path / "export")
    export.main(["prog", f"--preset={run['preset']}", f"--export_dir={export_dir}"])  # self-checks against Keras
    served = tf.saved_model.load(export_dir)
    image = np.random.default_rng(1).integers(0, 256, (1, 24, 40, 3), dtype=np.uint8)
    got = served.signatures["serving_default"](images=tf.constant(image))["probabilities"].numpy()
    want = tf.nn.softmax(mgml_tf.from_preset(run["preset"])(tf.constant(image, tf.float32)), axis=-1).numpy()
    assert np.max(np.abs(got - want)) < 1e-5


def test_fine_tuning_starts_from_exactly_the_preset(run, tmp_path, monkeypatch):
    """train --preset in a new model directory: the model the first step would train holds the preset's every
    variable (the memory included, not initialised again); only the data flags are given."""
    from mgml_tf.cli import train
    from mgml_tf.training import loop

    seen = {}

    def first_step(trainer, start_step):  # instead of the steps: what they would start from
        seen["start"] = start_step
        seen["variables"] = values(trainer.model)

    def no_initialisation(trainer, step=0):
        raise AssertionError("the memory of a preset is not initialised again")

    monkeypatch.setattr(loop.Trainer, "run", first_step)
    monkeypatch.setattr(loop.Trainer, "initialize_memory", no_initialisation)
    model_dir = str(tmp_path / "fine_tuned")
    data = ["--sources=synthetic", "--targets=", f"--synthetic_root={run['synth']}", *TINY_DATA]
    train.main(["prog", f"--preset={run['preset']}", f"--model_dir={model_dir}", *data])
    want = values(mgml_tf.from_preset(run["preset"]))
    assert seen["start"] == 0 and seen["variables"] == want
    # The new run records the preset's network: --flagfile=MODEL_DIR/flags.cfg resumes it without the preset.
    saved, theirs = md.load_config(model_dir), md.load_config(run["model_dir"])
    assert saved["resolved"]["architecture"] == theirs["resolved"]["architecture"]


@pytest.mark.slow
def test_predict_through_the_preset(run, tmp_path):
    """predict writes through --preset the very files it writes through the model directory."""
    from mgml_tf.cli import predict

    for source in ("model_dir", "preset"):
        predict.main(
            ["prog", f"--{source}={run[source]}", f"--input={run['synth']}/foggy", f"--output_dir={tmp_path}/{source}"]
        )
    assert tree_hash(f"{tmp_path}/preset") == tree_hash(f"{tmp_path}/model_dir")
    with pytest.raises(UsageError, match="--export_dir and --preset both name the model"):
        predict.main(
            ["prog", f"--export_dir={tmp_path}", f"--preset={run['preset']}", "--input=x", f"--output_dir={tmp_path}/o"]
        )
    assert sorted(os.listdir(tmp_path)) == ["model_dir", "preset"]


# ---------------------------------------------------------------------------------------------- refusals
def test_pack_refuses_an_occupied_destination_and_a_non_model_dir(run, tmp_path):
    from mgml_tf.cli import preset as preset_cli

    occupied = str(tmp_path / "occupied")
    os.makedirs(occupied)
    with open(os.path.join(occupied, "notes.txt"), "w") as f:
        f.write("not a preset")
    before = {p: tree_hash(p) for p in (run["preset"], occupied, run["model_dir"])}
    argv = ["prog", f"--model_dir={run['model_dir']}"]
    with pytest.raises(UsageError, match="exists; remove it or pass --overwrite"):
        preset_cli.main([*argv, f"--preset_dir={run['preset']}"])
    with pytest.raises(UsageError, match="is not a preset"):  # --overwrite replaces a preset, nothing else
        preset_cli.main([*argv, f"--preset_dir={occupied}", "--overwrite"])
    with pytest.raises(RunError, match="no flags.json"):
        preset_cli.main(["prog", f"--model_dir={occupied}", f"--preset_dir={tmp_path / 'new'}"])
    assert {p: tree_hash(p) for p in before} == before
    assert sorted(os.listdir(tmp_path)) == ["occupied"]  # no preset, no partial folder


def _truncated(path):
    weights = os.path.join(path, preset_lib.WEIGHTS)
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)


def _altered(path):
    weights = os.path.join(path, preset_lib.WEIGHTS)
    with open(weights, "r+b") as f:  # same size, one byte changed
        f.seek(os.path.getsize(weights) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def _other_version(path):
    rewrite(path, preset_lib.METADATA, {**read_json(os.path.join(path, preset_lib.METADATA)), "format_version": 2})


def _newer_mgml_tf(path):
    rewrite(path, preset_lib.METADATA, {**read_json(os.path.join(path, preset_lib.METADATA)), "mgml_tf_version": "9.0"})


def _config(change):
    def damage(path):
        config = read_json(os.path.join(path, preset_lib.CONFIG))
        change(config["config"])
        rewrite(path, preset_lib.CONFIG, config)

    return damage


def _training_flags(path):
    record = read_json(os.path.join(path, preset_lib.TRAINING))
    record["flags"]["synthetic_num_val"] = "many"  # evaluate --preset reads these flags as the run's
    rewrite(path, preset_lib.TRAINING, record)


DAMAGES = {
    "truncated": (_truncated, "variables.h5 has .* bytes, the manifest lists .* \\(truncated\\)"),
    "missing": (lambda p: os.remove(os.path.join(p, preset_lib.LABELS)), "incomplete: labels.json is missing"),
    "altered": (_altered, "variables.h5 does not match its sha256"),
    "other format version": (_other_version, "format version 2 .* reads version 1"),
    "newer mgml_tf": (_newer_mgml_tf, "written by mgml_tf 9.0, newer than this"),
    "not a preset": (lambda p: os.remove(os.path.join(p, preset_lib.MANIFEST)), "is not a preset"),
    "unknown option": (_config(lambda c: c["model"].update(colour="red")), "unknown option\\(s\\) \\['colour'\\]"),
    "wrong type": (_config(lambda c: c["model"].update(num_classes="19")), "num_classes must be an integer"),
    "unknown section": (_config(lambda c: c.update(training={})), "unknown section\\(s\\) \\['training'\\]"),
    "training flag of the wrong type": (_training_flags, "training.json .*flags.synthetic_num_val"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_or_foreign_preset_is_refused_in_one_line(run, tmp_path, damage):
    make, pattern = DAMAGES[damage]
    path = damaged_copy(run, tmp_path)
    make(path)
    with pytest.raises((RunError, UsageError), match=pattern) as refusal:
        preset_lib.open_preset(path)
    assert "\n" not in str(refusal.value)


def test_refused_commands_change_nothing(run, tmp_path):
    """A damaged preset through export and train, and ambiguous sources through evaluate and export:
    refused before anything is written."""
    from mgml_tf.cli import evaluate, export, train

    damaged = damaged_copy(run, tmp_path, "damaged")
    _truncated(damaged)
    before = {p: tree_hash(p) for p in (damaged, run["preset"], run["model_dir"])}
    out = str(tmp_path / "out")
    model, preset = f"--model_dir={run['model_dir']}", f"--preset={run['preset']}"
    cases = [
        (export.main, [f"--preset={damaged}", f"--export_dir={out}"], RunError, "truncated"),
        (train.main, [f"--preset={damaged}", f"--model_dir={out}", "--sources=synthetic"], RunError, "truncated"),
        (train.main, [preset, f"--model_dir={out}", "--sources=synthetic", "--num_classes=5"], UsageError, "fixes"),
        (evaluate.main, [model, preset, f"--output_json={out}/e.json"], UsageError, "both name the model"),
        (export.main, [model, preset, f"--export_dir={out}"], UsageError, "both name the model"),
    ]
    for main, argv, error, words in cases:
        with pytest.raises(error, match=words):
            main(["prog", *argv])
    assert {p: tree_hash(p) for p in before} == before
    assert sorted(os.listdir(tmp_path)) == ["damaged"]


def test_a_keras_hub_backbone_travels_as_its_architecture(tmp_path):
    """A model directory on a local keras-hub preset (a tiny DINOv2, LoRA-tuned) packs with backbone.json: the
    preset rebuilds it after the keras-hub preset is gone, bit-identical."""
    import keras

    from mgml_tf import config as config_lib
    from mgml_tf.training import checkpoints
    from tests.helpers import SMALL, tiny_vit_preset

    hub = tiny_vit_preset(str(tmp_path / "hub"), "dinov2")
    model_dir = str(tmp_path / "run")
    options = {**SMALL, "backbone": hub, "backbone_tuning": "lora", "lora_rank": 2, "model_dir": model_dir}
    config = config_lib.RunConfig.from_flat({**options, "sources": "synthetic"})
    keras.utils.set_random_seed(0)
    model = mgml_tf.build_model(**config.model_options())
    model.memory.assign(np.random.default_rng(0).normal(size=model.memory.shape).astype(np.float32))
    md.write_config(model_dir, config, [], [])
    md.write_backbone_architecture(model_dir, model)
    checkpoint = checkpoints.checkpoint_object(model)
    checkpoints.save(checkpoints.manager(checkpoint, model_dir, keep=1), 1, model.variables)
    shutil.rmtree(hub)  # neither packing nor loading needs the keras-hub preset

    preset_dir = str(tmp_path / "preset")
    preset_lib.pack(model_dir, preset_dir, **QUIET)
    assert read_json(os.path.join(preset_dir, preset_lib.BACKBONE)) == model.backbone_architecture
    loaded = mgml_tf.from_preset(preset_dir)
    assert values(loaded) == values(model)
    images = tf.constant(np.random.default_rng(2).uniform(0, 255, (1, 32, 48, 3)), tf.float32)
    assert np.array_equal(loaded(images).numpy(), model(images).numpy())


def test_variables_that_do_not_fit_the_configuration_are_refused(run, tmp_path):
    """A variables file consistent with the manifest but not with the configuration (another model's, or edited
    and re-listed) is refused in one line naming a variable, before anything is assigned."""
    import h5py

    path = damaged_copy(run, tmp_path)
    weights = os.path.join(path, preset_lib.WEIGHTS)
    with h5py.File(weights, "a") as f:
        del f["memory/memory"]
    manifest = read_json(os.path.join(path, preset_lib.MANIFEST))
    manifest["files"][preset_lib.WEIGHTS] = {"size": os.path.getsize(weights), "sha256": preset_lib.sha256_of(weights)}
    with open(os.path.join(path, preset_lib.MANIFEST), "w") as f:
        json.dump(manifest, f)
    with pytest.raises(RunError, match="has no variable memory/memory"):
        mgml_tf.from_preset(path)
