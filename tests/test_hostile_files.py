"""Hostile files (docs/RELIABILITY.md, "Hostile files"): absurd sizes declared in PNG and JPEG headers, PNG
decompression bombs, labels of another size than their image, symlink loops in dataset trees, tampered model
directories. Each is refused in one line naming the file (and the key, the sizes), before anything large is
allocated or built, and nothing on disk changes. The hostile files are crafted here from a few bytes
(``tools.hostile_files``); the memory of a refusal is measured in a child process."""

import json
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

import mgml_tf
from mgml_tf import config as config_lib
from mgml_tf.cli import common, predict_inputs
from mgml_tf.cli.predict import read_image
from mgml_tf.data import check
from mgml_tf.data import datasets as D
from mgml_tf.data.episodes import aggregated_batches, evaluation_dataset
from mgml_tf.errors import RunError
from mgml_tf.training import model_dir as md
from tests.test_bad_input import tree_hash
from tools import hostile_files
from tools.hostile_files import JPEG_MAX_SIDE, PNG_MAX_SIDE, jpeg_declaring, png, zeros_idat

VARIABLE = config_lib.MAX_IMAGE_PIXELS_VARIABLE


def one_line(error):
    message = str(error)
    assert "\n" not in message, message
    return message


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def encoded_png(height, width, channels=3):
    return tf.io.encode_png(np.zeros((height, width, channels), np.uint8)).numpy()


def gtav(root, image=None, image_ext=".png", label_size=(4, 6)):
    """A GTAV tree of one good 4x6 pair and, given ``image`` bytes, a second pair of that image and a grey label
    of ``label_size``; returns (root, the second image's path)."""
    write(f"{root}/images/00001.png", encoded_png(4, 6))
    write(f"{root}/labels/00001.png", encoded_png(4, 6, 1))
    if image is None:
        return root, None
    path = write(f"{root}/images/00002{image_ext}", image)
    write(f"{root}/labels/00002.png", encoded_png(*label_size, 1))
    return root, path


def jpeg_after_app_segments(width, height):
    """A JPEG declaring ``width`` x ``height`` whose frame header comes after two 64 KiB APP1 segments (an EXIF
    block beyond the first 64 KiB, where a reader of the first block only would not find the size)."""
    data = jpeg_declaring(width, height)
    app = b"\xff\xe1" + struct.pack(">H", 65535) + bytes(65533)
    return data[:2] + app + app + data[2:]


# ------------------------------------------------------------------------------------------- declared sizes
HUGE = {
    "png": (lambda: png(PNG_MAX_SIDE, PNG_MAX_SIDE, zeros_idat(1, 1)), ".png", PNG_MAX_SIDE, PNG_MAX_SIDE),
    "jpeg": (lambda: jpeg_declaring(JPEG_MAX_SIDE, JPEG_MAX_SIDE), ".jpg", JPEG_MAX_SIDE, JPEG_MAX_SIDE),
    "jpeg_after_128k_of_exif": (lambda: jpeg_after_app_segments(20000, 12000), ".jpg", 20000, 12000),
}


@pytest.mark.parametrize("kind", sorted(HUGE))
def test_declared_size_over_the_limit_refused_by_every_reader_before_decoding(tmp_path, kind):
    make, ext, width, height = HUGE[kind]
    root, path = gtav(str(tmp_path / "g"), make(), ext)
    before = tree_hash(root)
    limit = config_lib.max_image_pixels()
    assert width * height > limit
    expected = f"{path!r} declares {width}x{height} pixels (width x height), more than the limit of {limit} pixels"

    with pytest.raises(D.ImageTooLargeError) as e:
        D.check_image_file(path)
    assert expected in one_line(e.value) and VARIABLE in str(e.value)
    with pytest.raises(RunError) as e:  # predict reads its inputs with the same check
        read_image(path)
    assert expected in one_line(e.value)
    with pytest.raises(D.ImageTooLargeError) as e:
        D.load_domain("gtav", root, check_files=True)
    assert expected in one_line(e.value)
    skipping = D.load_domain("gtav", root, skip_bad=True)
    assert len(skipping) == 1 and expected in skipping.skipped[0][2]
    # the tf.data pipeline (training and evaluation): the assertion runs on the header before the decoder
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        list(D.load_domain("gtav", root).as_dataset())
    assert expected in common.data_check_message(e.value.message)
    assert tree_hash(root) == before


def test_the_pixel_limit_comes_from_the_environment(tmp_path, monkeypatch):
    small, large = write(f"{tmp_path}/a.png", encoded_png(30, 30)), write(f"{tmp_path}/b.png", encoded_png(40, 40))
    monkeypatch.setenv(VARIABLE, "1000")
    assert D.check_image_file(small) == (30, 30)
    with pytest.raises(D.ImageTooLargeError, match=r"declares 40x40 pixels .* limit of 1000 pixels"):
        D.check_image_file(large)
    with pytest.raises(config_lib.ConfigError) as e:  # the image-size options are held to it too
        config_lib.RunConfig.from_flat({"crop_size": (32, 64)})
    assert one_line(e.value).startswith("crop_size=32,64 is ") and VARIABLE in str(e.value)
    monkeypatch.setenv(VARIABLE, "lots")
    with pytest.raises(ValueError, match=f"^{VARIABLE}='lots' is not a positive number of pixels"):
        D.check_image_file(small)


def test_png_whose_data_inflates_beyond_its_declared_size_is_refused(tmp_path):
    """A 6x4 PNG (72 bytes of pixels) whose compressed data inflates to 128 MiB, in 128 KiB. TensorFlow's decoder
    allocates the declared size only and returns the image (inflating all of it); the loaders refuse the file
    from its length: more than twice the raw pixels plus `_PNG_SLACK` is compressed data the image cannot use."""
    bomb = png(6, 4, zeros_idat(6, 4, extra=128 << 20))
    root, path = gtav(str(tmp_path / "g"), bomb, label_size=(4, 6))
    limit = D._png_byte_limit(6, 4, 8, 2)
    assert limit == 2 * 4 * (1 + 6 * 3) + D._PNG_SLACK < len(bomb)
    assert tf.io.decode_png(bomb, channels=3).shape == (4, 6, 3)  # what the decoder alone does with it
    expected = f"{path!r} holds {len(bomb)} bytes, more than a 6x4 PNG can need ({limit})"
    with pytest.raises(D.ImageTooLargeError) as e:
        D.check_image_file(path)
    assert expected in one_line(e.value)
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        list(D.load_domain("gtav", root).as_dataset())
    assert expected in common.data_check_message(e.value.message)
    # incompressible pixels (deflate's stored blocks) stay within the bound
    noise = tf.io.encode_png(np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8)).numpy()
    assert D.check_image_file(write(f"{tmp_path}/noise.png", noise)) == (64, 64)


@pytest.mark.slow
def test_a_refusal_takes_no_more_memory_than_reading_a_small_image():
    """A child process reads a small image with every reader (its normal size: the peak resident set size
    VmHWM), then the largest sizes PNG and JPEG headers can declare, a valid 12000x12000 PNG (432 MB decoded)
    and a PNG inflating to 256 MiB: every reader refuses each in one line naming it, and the peak does not grow
    beyond noise; TensorFlow alone, on the valid PNG, grows it by the decoded size (what the check prevents)."""
    report = hostile_files.memory()
    for name, entry in report["refused"].items():
        for reader, error in entry["errors"].items():
            assert error is not None and name in error, (name, reader, error)
            assert "declares" in error or "holds" in error, (name, reader, error)
    grown = report["peak_after_refusals_mb"] - report["normal_peak_mb"]
    assert grown < 32, report
    decoded_mb = 12000 * 12000 * 3 / 2**20
    direct = report["tf_decode_valid_png_12000x12000"]
    assert direct["peak_after_mb"] - report["peak_after_refusals_mb"] > 0.9 * decoded_mb, report


# --------------------------------------------------------------------------------------------- size mismatch
def test_label_of_another_size_is_named_with_both_sizes_on_every_path(tmp_path, capsys):
    root = str(tmp_path / "g")
    image = write(f"{root}/images/00002.png", encoded_png(4, 6))
    label = write(f"{root}/labels/00002.png", encoded_png(5, 6, 1))
    before = tree_hash(root)
    expected = f"image {image!r} is 4x6 but label {label!r} is 5x6 (height x width)"
    domain = D.load_domain("gtav", root)
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        next(iter(evaluation_dataset(domain)))
    assert f"image and label sizes differ: {expected}" in common.data_check_message(e.value.message)

    def train_like(argv):  # a command whose training pipeline meets the pair: the one line it prints
        next(iter(aggregated_batches([domain], batch_per_domain=1, crop_size=4, seed=0)))

    with pytest.raises(SystemExit) as e:
        common.run("mgml_tf.train", train_like, ["mgml_tf.train"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("mgml_tf.train: error: image and label sizes differ: ") and expected in lines[0]
    with pytest.raises(D.SizeMismatchError) as e:
        D.load_domain("gtav", root, check_files=True)
    assert expected in one_line(e.value)
    report = []
    spec = check.DomainSpec("gtav", root, "train")
    options = check.make_flags()
    options(["check"])
    assert check.check_domain(spec, options, out=report.append) == ["size mismatch"]
    [fault] = [line for line in report if "FAULT" in line]
    assert "images/00002.png is 4x6 but labels/00002.png is 5x6" in fault
    assert tree_hash(root) == before


# --------------------------------------------------------------------------------------------- symlink loops
def test_symlink_loop_in_a_dataset_tree_is_named_in_one_line(tmp_path):
    root = str(tmp_path / "cs")
    write(f"{root}/leftImg8bit/val/aachen/a_000000_000000_leftImg8bit.png", encoded_png(4, 6))
    write(f"{root}/gtFine/val/aachen/a_000000_000000_gtFine_labelIds.png", encoded_png(4, 6, 1))
    link = f"{root}/leftImg8bit/val/loop"
    os.symlink("..", link)  # -> leftImg8bit, which holds the link
    before = tree_hash(root)
    with pytest.raises(D.SymlinkLoopError) as e:
        D.load_domain("cityscapes", root, "val")
    assert f"symlink loop: {link!r} points to {os.path.realpath(link)!r}" in one_line(e.value)
    report = []
    options = check.make_flags()
    options(["check"])
    assert check.check_domain(check.DomainSpec("cityscapes", root, "val"), options, out=report.append) == [
        "symlink loop"
    ]
    assert any(line.startswith(f"  FAULT symlink loop: {link!r}") for line in report), report
    # flat layouts list one folder without descending, and predict's listing does not follow links: both end
    flat, _ = gtav(str(tmp_path / "g"))
    os.symlink(".", f"{flat}/images/loop")
    assert len(D.load_domain("gtav", flat)) == 1
    assert [rel for _, rel in predict_inputs.list_images(f"{flat}/images")] == ["00001.png"]
    assert tree_hash(root) == before


# ------------------------------------------------------------------------------------------ model directories
SMALL = dict(backbone="resnet_small", num_classes=4, feature_channels=8, decoder_channels=8, low_level_channels=4)


def write_saved_config(model_dir):
    """The model directory's flags.json as training writes it (`model_dir.write_config`); returns its content."""
    config = config_lib.RunConfig().replace(**SMALL, crop_size=(64,), model_dir=model_dir, sources="gtav:/d/g")
    md.write_config(model_dir, config, ["gtav:/d/g"], [], given=("num_devices",))
    with open(os.path.join(model_dir, md.CONFIG_JSON)) as f:
        return json.load(f)


def _set(saved, where, value):
    *parents, key = where.split(".")
    for parent in parents:
        saved = saved[parent]
    saved[key] = value


TAMPERED = {  # case -> (key path and value, or the file's text; what the message names)
    "string for an integer": (("options.num_classes", "19"), "options.num_classes: num_classes must be an integer"),
    "float for an integer": (("flags.train_steps", 1.5), "flags.train_steps: train_steps must be an integer"),
    "number for a boolean": (("options.aux_head", 1), "options.aux_head: aux_head must be true or false"),
    "unknown option": (("options.run_this", "rm -rf /"), "options.run_this: unknown option"),
    "unknown key": (("evil", {}), "key 'evil': unknown"),
    "unknown section": (("config.plugins", {}), "config.plugins: unknown section"),
    "10^9 classes": (("options.num_classes", 10**9), "options.num_classes: num_classes must be at most 255"),
    "10^9 channels": (("config.model.feature_channels", 10**9), "config.model.feature_channels: feature_channels"),
    "10^6 crop": (("flags.crop_size", [10**6]), "flags.crop_size: crop_size=1000000 is 1,000,000 megapixels"),
    "10^6 window": (("config.evaluation.window_size", [10**6, 10**6]), "config.evaluation.window_size"),
    "negative count": (("flags.batch_per_domain", -4), "flags.batch_per_domain: batch_per_domain must be a positive"),
    "sources not strings": (("resolved.sources", [1]), "resolved.sources: must be a list of name:root strings"),
    "not JSON": ("{'options': 1", "cannot read"),
    "not an object": ("[1, 2]", "the file: must hold a JSON object, not list"),
    "nested 100000 deep": ("[" * 100_000, "cannot read"),
    "2 MiB": ("{" + " " * (2 << 20) + "}", f"is {(2 << 20) + 2} bytes, more than such a file can be"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_flags_json_refused_naming_the_file_and_key_before_building(tmp_path, monkeypatch, case):
    change, named = TAMPERED[case]
    model_dir = str(tmp_path / "run")
    path = os.path.join(model_dir, md.CONFIG_JSON)
    saved = write_saved_config(model_dir)
    assert md.load_config(model_dir) == saved  # the untampered file passes
    if isinstance(change, tuple):
        _set(saved, *change)
        text = json.dumps(saved)
    else:
        text = change
    with open(path, "w") as f:
        f.write(text)
    before = tree_hash(model_dir)

    def must_not_build(**options):
        raise AssertionError("a model was built from a tampered flags.json")

    monkeypatch.setattr(mgml_tf, "build_model", must_not_build)
    for read in (
        lambda: md.build_from_dir(model_dir, restore=False),  # evaluate, export, predict --model_dir
        lambda: md.check_compatible(model_dir, config_lib.RunConfig().replace(**SMALL).model_options()),  # resume
    ):
        with pytest.raises(RunError) as e:
            read()
        message = one_line(e.value)
        assert path in message and named in message, message
    assert tree_hash(model_dir) == before


DINOV2 = {
    "module": "keras_hub.src.models.dinov2.dinov2_backbone",
    "class_name": "DINOV2Backbone",
    "config": {
        "name": "dinov2_backbone",
        "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}},
        "patch_size": 8,
        "num_layers": 2,
        "hidden_dim": 16,
        "num_heads": 2,
        "intermediate_dim": 32,
        "image_shape": [32, 32, 3],
        "position_embedding_shape": [48, 48, 3],
    },
    "registered_name": "keras_hub>DINOV2Backbone",
}
BACKBONES = {  # case -> (key path, value; what the message names)
    "another class": (("class_name", "GemmaBackbone"), "class_name: 'GemmaBackbone' is not a supported backbone"),
    "another module": (("module", "os"), "module: 'os' is not a keras_hub module"),
    "another registration": (("registered_name", "custom>Evil"), "registered_name: 'custom>Evil'"),
    "10^9 wide": (("config.hidden_dim", 10**9), "config.hidden_dim: 1000000000 is outside 0..65536"),
    "10^6 image": (("config.image_shape", [10**6, 10**6, 3]), "config.image_shape[0]: 1000000 is outside"),
    "negative depth": (("config.num_layers", -1), "config.num_layers: -1 is outside"),
    "10^10 parameters": (
        ("config.hidden_dim", 65536),
        f"hidden_dim=65536, intermediate_dim=32 make about {2 * (4 * 65536**2 + 2 * 65536 * 32):.3g} parameters",
    ),
    "another dtype class": (("config.dtype", {"class_name": "Lambda"}), "config.dtype: 'Lambda'"),
}


@pytest.mark.parametrize("case", sorted(BACKBONES) + ["not JSON"])
def test_tampered_backbone_json_refused_naming_the_file_and_key(tmp_path, case):
    model_dir = str(tmp_path / "run")
    write(f"{model_dir}/checkpoints/ckpt-1.index", b"")  # only its presence matters: the json is read first
    write(f"{model_dir}/checkpoints/checkpoint", b'model_checkpoint_path: "ckpt-1"\n')
    path = write(f"{model_dir}/{md.BACKBONE_JSON}", json.dumps(DINOV2).encode())
    assert md.saved_backbone_architecture(model_dir) == DINOV2
    if case == "not JSON":
        text, named = "{", "cannot read"
    else:
        tampered = json.loads(json.dumps(DINOV2))
        (where, value), named = BACKBONES[case]
        _set(tampered, where, value)
        text = json.dumps(tampered)
    write(path, text.encode())
    with pytest.raises(RunError) as e:
        md.saved_backbone_architecture(model_dir)
    message = one_line(e.value)
    assert path in message and named in message, message
