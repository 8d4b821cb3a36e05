"""Bad input across the command-line tools and the Python API (docs/RELIABILITY.md, "Bad input and safe
loading"): missing, unreadable or unwritable paths, damaged or unusual images, labels with unknown values,
bad flagfiles, checkpoints of another configuration and bad serving requests. Every refusal is one line
that says what to do, and nothing already written changes (directories are hashed before and after).

One tiny training run (configs/demo_tiny.cfg, method baseline, 1 step) is shared by the module; the rest
runs in-process where the command-line path is already covered elsewhere."""

import hashlib
import json
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

import mgml_tf.data as data
from mgml_tf.cli import common as cli
from mgml_tf.errors import RunError, UsageError
from tests.cli_helpers import refused, run_cli, tiny_args


# ------------------------------------------------------------------------------------------- helpers
def tree_hash(path):
    """sha256 over every file under ``path`` (relative name and content); None if it does not exist."""
    if not os.path.exists(path):
        return None
    h = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _write(path, payload):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(payload)


def png(array):
    a = np.asarray(array)
    return tf.io.encode_png(tf.constant(a if a.ndim == 3 else a[..., None])).numpy()


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def zero_size_png():
    """A structurally complete PNG (signature, IHDR, IDAT, IEND) of 0x0 pixels."""
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )


def gtav_tree(root, images, labels=None, size=(8, 8)):
    """A GTAV-layout folder: ``images`` {stem: PNG bytes}; labels default to all-road colour labels."""
    road = np.tile(np.array([128, 64, 128], np.uint8), size + (1,))
    for stem, payload in images.items():
        _write(f"{root}/images/{stem}.png", payload)
        _write(f"{root}/labels/{stem}.png", (labels or {}).get(stem, png(road)))
    return root


def load_all(domain):
    return [(i.numpy(), l.numpy()) for i, l in domain.as_dataset()]


# ----------------------------------------------------------------------------- the shared tiny run
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_input")
    model_dir, synth = str(base / "run"), str(base / "synth")
    run_cli(
        "train",
        *tiny_args(model_dir, synth, "--method=baseline", "--train_steps=1", "--checkpoint_every=1", "--targets="),
        check=True,
    )
    return {"base": base, "model_dir": model_dir, "synth": synth}


@pytest.fixture(scope="module")
def exported(run):
    """The run exported in-process (mgml_tf.serving.export; the CLI is covered by test_cli_end_to_end)."""
    from mgml_tf import serving
    from mgml_tf.training import model_dir as md

    model, config, _ = md.build_from_dir(run["model_dir"], log=lambda m: None)
    export_dir = str(run["base"] / "export")
    serving.export(model, export_dir, config=config)
    return export_dir


# ------------------------------------------------------------------------------- images: policies
def test_grey_rgba_16bit_images_are_read_as_rgb(tmp_path):
    """Policy: grey -> replicated to 3 channels; RGBA -> alpha dropped (colour kept); 16-bit -> scaled to
    8 bits (round(v * 255 / 65535)). Same in the dataset pipeline and in mgml_tf.predict."""
    from mgml_tf.cli import predict

    rgba = np.zeros([8, 8, 4], np.uint8)
    rgba[..., :3] = (10, 20, 30)  # alpha 0: still read as its colour
    deep = np.zeros([8, 8, 3], np.uint16)
    deep[...] = (65535, 25607, 257)
    payloads = {
        "grey": png(np.full([8, 8], 77, np.uint8)),
        "greyalpha": png(np.full([8, 8, 2], 77, np.uint8)),
        "rgba": png(rgba),
        "deep": png(deep),
        "grey16": png(np.full([8, 8, 1], 200 * 257, np.uint16)),
    }
    want = {
        "grey": (77, 77, 77),
        "greyalpha": (77, 77, 77),
        "rgba": (10, 20, 30),
        "deep": (255, 100, 1),
        "grey16": (200, 200, 200),
    }
    root = gtav_tree(str(tmp_path / "g"), payloads)
    dom = data.load_domain("gtav", root, check_files=True)
    for (path, _), (image, label) in zip(dom.pairs, load_all(dom)):
        stem = os.path.splitext(os.path.basename(path))[0]
        assert image.shape == (8, 8, 3) and image.dtype == np.uint8
        assert tuple(image[0, 0]) == want[stem], stem
        assert (label == 0).all()
        assert tuple(predict.read_image(path)[0, 0]) == want[stem]


# ------------------------------------------------------------------- images: damaged, empty, 0x0
@pytest.mark.parametrize("kind", ["empty", "zero_size", "truncated", "not_an_image", "dangling_symlink"])
def test_bad_image_files_named_and_skippable(tmp_path, kind):
    good = png(np.random.default_rng(0).integers(0, 256, [32, 32, 3], dtype=np.uint8))
    bad = {
        "empty": b"",
        "zero_size": zero_size_png(),
        "truncated": good[: len(good) // 2],
        "not_an_image": b"hello, not an image",
        "dangling_symlink": None,
    }[kind]
    root = str(tmp_path / "g")
    gtav_tree(root, {"00001": good, "00002": good}, size=(32, 32))
    path = f"{root}/images/00002.png"
    os.remove(path)
    if bad is None:
        os.symlink(str(tmp_path / "nowhere.png"), path)
    else:
        _write(path, bad)
    with pytest.raises(data.CorruptFileError, match=r"images/00002\.png") as e:
        data.check_image_file(path)
    assert "\n" not in str(e.value) and ("remove it" in str(e.value) or "permissions" in str(e.value))
    with pytest.raises(data.CorruptFileError, match=r"images/00002\.png.*skip_bad=True"):
        data.load_domain("gtav", root, check_files=True)
    for check in (False, True):
        dom = data.load_domain("gtav", root, check_files=check, skip_bad=True)
        assert len(dom) == 1 and dom.skipped[0][0] == path and len(load_all(dom)) == 1
    if bad is not None:  # streamed without any check: the pipeline's error names the file
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"images/00002\.png"):
            load_all(data.load_domain("gtav", root))


def test_missing_and_wrong_roots(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="not found"):
        data.load_domain("cityscapes", str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(data.DatasetNotFoundError, match="not found"):
        data.load_domain("gtav", str(tmp_path / "file"))
    with pytest.raises(data.SplitListError, match="not found"):
        gtav_tree(str(tmp_path / "g"), {"a": png(np.zeros([8, 8, 3], np.uint8))})
        data.load_domain("gtav", str(tmp_path / "g"), split_list=str(tmp_path / "no_list.txt"))


# ------------------------------------------------------------------------------ labels: unknown values
def test_unknown_label_ids_ignored_when_streaming_refused_by_check_files(tmp_path):
    root = str(tmp_path / "bdd")
    image = png(np.zeros([4, 6, 3], np.uint8))
    for stem, ids in (("a", [0, 1, 18, 255]), ("b", [0, 1, 19, 40, 254])):
        _write(f"{root}/images/10k/train/{stem}.jpg", tf.io.encode_jpeg(np.zeros([4, 6, 3], np.uint8)).numpy())
        _write(f"{root}/labels/sem_seg/masks/train/{stem}.png", png(np.resize(np.array(ids, np.uint8), [4, 6])))
    del image
    labels = [l for _, l in load_all(data.load_domain("bdd100k", root))]
    assert set(np.unique(labels[1]).tolist()) == {0, 1, 255}  # 19, 40, 254 -> ignore
    with pytest.raises(data.UnknownLabelValueError, match=r"b\.png.* 19, 40, 254 .*ids 0\.\.18 or 255") as e:
        data.load_domain("bdd100k", root, check_files=True)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value) and "skip_bad=True" in str(e.value)
    dom = data.load_domain("bdd100k", root, check_files=True, skip_bad=True)
    assert [os.path.basename(p[1]) for p in dom.pairs] == ["a.png"] and "19, 40, 254" in dom.skipped[0][2]


def test_unknown_label_colours_refused_by_check_files(tmp_path):
    from mgml_tf.data import labels as L

    known = np.array([c for c in L.CITYSCAPES_ALL_COLORS], np.uint8)[None]  # every Cityscapes colour
    odd = known.copy()
    odd[0, :2] = [(1, 2, 3), (255, 255, 255)]
    image = png(np.zeros(known.shape, np.uint8))
    root = gtav_tree(
        str(tmp_path / "g"), {"a": image, "b": image}, {"a": png(known), "b": png(odd)}, size=known.shape[:2]
    )
    with pytest.raises(data.UnknownLabelValueError, match=r"labels/b\.png.*\(1, 2, 3\), \(255, 255, 255\)"):
        data.load_domain("gtav", root, check_files=True)
    assert len(data.load_domain("gtav", root, check_files=True, skip_bad=True)) == 1


def test_cityscapes_all_colours_are_the_official_ones():
    from cityscapesscripts.helpers import labels as cs

    from mgml_tf.data import labels as L

    assert set(L.CITYSCAPES_ALL_COLORS) == {tuple(l.color) for l in cs.labels}


def test_16bit_label_ids_are_read_exactly(tmp_path):
    """A 16-bit grey label of ids is read as ids (not scaled to 8 bits); ids above 255 are unknown."""
    root = str(tmp_path / "bdd")
    _write(f"{root}/images/10k/train/a.jpg", tf.io.encode_jpeg(np.zeros([2, 4, 3], np.uint8)).numpy())
    _write(f"{root}/labels/sem_seg/masks/train/a.png", png(np.array([[3, 18, 255, 300], [0, 0, 0, 0]], np.uint16)))
    ((_, label),) = load_all(data.load_domain("bdd100k", root))
    assert label[0].tolist() == [3, 18, 255, 255]
    with pytest.raises(data.UnknownLabelValueError, match=r"a\.png.* 300 "):
        data.load_domain("bdd100k", root, check_files=True)


def test_synthetic_suite_labels_hold_only_known_values(run):
    from mgml_tf.synthetic import streets as synthetic

    for style, layout in synthetic.DEFAULT_SUITE.items():
        split = "train" if style in synthetic.SOURCE_STYLES else "val"
        assert len(data.load_domain(layout, os.path.join(run["synth"], style), split=split, check_files=True))


# ------------------------------------------------------------------------------------------ flagfiles
@pytest.mark.parametrize(
    "content, words",
    [
        ("--no_such_flag=3\n", ("unknown flag --no_such_flag", "bad.cfg:1", "--help")),
        ("# comment\nlearning_rate=0.1\n", ("'learning_rate=0.1'", "bad.cfg:2", "--name=value")),
        ("--learning_rate=abc\n", ("--learning_rate=abc", "bad.cfg:1", "fix the value")),
        ("--train_steps\n--log_every=1\n", ("--train_steps has no value", "bad.cfg:1", "--train_steps=VALUE")),
        ("--flagfile={missing}\n", ("{missing} not found", "included from", "bad.cfg:1")),
        (b"\x89PNG\r\n\x1a\n\xff\xfe", ("not UTF-8 text",)),
        (None, ("is a folder",)),
    ],
)
def test_flagfile_errors_name_the_file_and_line(tmp_path, content, words):
    from mgml_tf.cli import train

    path = tmp_path / "bad.cfg"
    missing = str(tmp_path / "missing.cfg")
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content.format(missing=missing))
    with pytest.raises(UsageError) as e:
        cli.parse_flags(train.make_flags(), ["prog", f"--flagfile={path}", "--model_dir=/tmp/x"], "mgml_tf.train")
    message = str(e.value)
    assert "\n" not in message
    for w in words:
        assert w.format(missing=missing) in message, message


@pytest.mark.parametrize(
    "tool, content, words",
    [
        ("evaluate", "--no_such_flag=1\n", ("unknown flag --no_such_flag", "bad.cfg:1")),
        ("export", "model_dir /tmp\n", ("'model_dir /tmp'", "bad.cfg:1")),
        ("predict", None, ("not UTF-8",)),
    ],
)
def test_flagfile_errors_of_every_tool_are_one_line(tmp_path, tool, content, words):
    path = tmp_path / "bad.cfg"
    if content is None:
        path.write_bytes(b"\xff\xfe\x00binary")
    else:
        path.write_text(content)
    proc = run_cli(tool, f"--flagfile={path}")
    line = refused(proc, *words)
    assert proc.returncode == 2 and line.startswith(f"mgml_tf.{tool}: error:")
    assert sorted(os.listdir(tmp_path)) == ["bad.cfg"]


# ------------------------------------------------------------------------------------- output paths
def test_train_refuses_unwritable_model_dir(tmp_path):
    (tmp_path / "a_file").write_text("x")
    for model_dir, words in (
        (tmp_path / "a_file" / "run", ("a_file is a file",)),
        (tmp_path / "a_file", ("not a folder",)),
    ):
        with pytest.raises(UsageError) as e:
            cli.check_writable("model_dir", str(model_dir))
        assert all(w in str(e.value) for w in words)
    synth = tmp_path / "synth"
    refused(run_cli("train", *tiny_args(str(tmp_path / "a_file" / "run"), str(synth))), "model_dir", "is a file")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_outputs_under_a_file_refused_before_work(run, tmp_path):
    """export --export_dir, evaluate --output_json / --save_predictions, predict --output_dir: a path that
    cannot be created is refused before the model is loaded; the model_dir is unchanged."""
    from mgml_tf.cli import evaluate, export, predict

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    under = str(blocker / "out")
    before = tree_hash(run["model_dir"])
    image = os.path.join(run["synth"], "foggy")
    cases = [
        (export.main, [f"--model_dir={run['model_dir']}", f"--export_dir={under}"], "export_dir"),
        (evaluate.main, [f"--model_dir={run['model_dir']}", f"--output_json={under}/r.json"], "output_json"),
        (evaluate.main, [f"--model_dir={run['model_dir']}", f"--save_predictions={under}"], "save_predictions"),
        (evaluate.main, [f"--model_dir={run['model_dir']}", f"--output_json={tmp_path}"], "output_json"),
        (predict.main, [f"--model_dir={run['model_dir']}", f"--input={image}", f"--output_dir={under}"], "output_dir"),
    ]
    for main, argv, flag in cases:
        with pytest.raises(UsageError, match=f"--{flag}="):
            main(["prog", *argv])
    assert tree_hash(run["model_dir"]) == before
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


# ------------------------------------------------------------------------------------------ predict
def test_predict_unreadable_inputs(run, exported, tmp_path):
    """Every kind of bad image is named by read_image; the CLI stops before writing anything."""
    from mgml_tf.cli import predict

    good = png(np.random.default_rng(1).integers(0, 256, [16, 16, 3], dtype=np.uint8))
    bad = {
        "empty.png": b"",
        "zero.png": zero_size_png(),
        "truncated.png": good[: len(good) // 2],
        "text.jpg": b"not a jpeg",
    }
    for name, payload in bad.items():
        _write(tmp_path / name, payload)
        with pytest.raises(RunError, match=f"cannot read image .*{name}"):
            predict.read_image(str(tmp_path / name))
    inputs = tmp_path / "in"
    _write(inputs / "a.png", good)
    os.symlink(str(tmp_path / "gone.png"), inputs / "b.png")
    out = tmp_path / "out"
    refused(
        run_cli("predict", f"--export_dir={exported}", f"--input={inputs}", f"--output_dir={out}"),
        "cannot read image",
        "b.png",
    )
    assert not out.exists()


def test_predict_grey_rgba_16bit_inputs(exported, tmp_path):
    inputs = tmp_path / "in"
    _write(inputs / "grey.png", png(np.full([20, 24], 90, np.uint8)))
    _write(inputs / "rgba.png", png(np.full([20, 24, 4], 90, np.uint8)))
    _write(inputs / "deep.png", png(np.full([20, 24, 3], 90 * 257, np.uint16)))
    out = tmp_path / "out"
    run_cli(
        "predict",
        f"--export_dir={exported}",
        f"--input={inputs}",
        f"--output_dir={out}",
        "--memory_classes=none",
        check=True,
    )
    ids = [tf.io.decode_png(tf.io.read_file(str(out / f"{n}_trainIds.png"))).numpy() for n in ("grey", "rgba", "deep")]
    assert all(i.shape == (20, 24, 1) for i in ids)
    np.testing.assert_array_equal(ids[0], ids[1])  # the same RGB image three ways
    np.testing.assert_array_equal(ids[0], ids[2])


def test_predict_refuses_a_folder_that_is_not_an_export(run, tmp_path):
    from mgml_tf.cli import predict

    image = tmp_path / "a.png"
    _write(image, png(np.zeros([8, 8, 3], np.uint8)))
    with pytest.raises(RunError, match="holds no SavedModel.*mgml_tf.export"):
        predict.main(["prog", f"--export_dir={run['model_dir']}", f"--input={image}", f"--output_dir={tmp_path / 'o'}"])
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------- serving signature
def test_serving_signature_refuses_bad_requests(exported):
    """uint8 [B, H, W, 3] with B, H, W >= 1 only. Floats are refused (not rescaled: 0..1 or 0..255 is
    ambiguous); another rank, channel count or an empty batch/image fails a check before the network."""
    loaded = tf.saved_model.load(exported)
    for name in ("serving_default", "memory_weights"):
        if name not in loaded.signatures:
            continue
        fn = loaded.signatures[name]
        assert fn(images=tf.zeros([1, 1, 1, 3], tf.uint8))["labels"].shape == (1, 1, 1)
        for dtype in (tf.float32, tf.int32, tf.uint16):
            with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor"):
                fn(images=tf.zeros([1, 8, 8, 3], dtype))
        for shape in ([8, 8, 3], [1, 1, 8, 8, 3], [1, 8, 8, 1], [1, 8, 8, 4], [0, 8, 8, 3], [1, 0, 0, 3]):
            with pytest.raises(
                tf.errors.InvalidArgumentError, match=r"images must be uint8 \[batch, height, width, 3\]"
            ) as e:
                fn(images=tf.zeros(shape, tf.uint8))
            assert str(shape).replace(",", "")[1:-1] in str(e.value)  # the shape it got


# ------------------------------------------------------------------------ checkpoints of another config
def test_checkpoint_of_another_configuration_names_the_option(run, tmp_path):
    from mgml_tf.training import model_dir as md

    config = json.load(open(os.path.join(run["model_dir"], md.CONFIG_JSON)))
    options = config["options"]
    for key, value in (("num_classes", 20), ("backbone", "resnet50"), ("head", "deeplabv2"), ("feature_channels", 32)):
        with pytest.raises(RunError, match=f"{key}=") as e:
            md.check_compatible(run["model_dir"], {**options, key: value})
        assert "\n" not in str(e.value) and "new --model_dir" in str(e.value)
    # Checkpoints copied without flags.json: the checkpoint's own variables name the option.
    copy = str(tmp_path / "copy")
    shutil.copytree(os.path.join(run["model_dir"], "checkpoints"), os.path.join(copy, "checkpoints"))
    assert md.check_compatible(copy, options) is None
    for key, value in (("num_classes", 7), ("backbone", "resnet101"), ("head", "deeplabv2")):
        with pytest.raises(RunError, match=f"{key}=.*\\(checkpoint\\)"):
            md.check_compatible(copy, {**options, key: value})
    # A flags.json that does not match its checkpoint (evaluate/export/predict rebuild from it).
    with open(os.path.join(copy, md.CONFIG_JSON), "w") as f:
        json.dump({**config, "options": {**options, "head": "deeplabv2"}}, f)
    with pytest.raises(RunError, match=r"does not match the checkpoint.*head='deeplabv3plus' \(checkpoint\)"):
        md.build_from_dir(copy)


def test_a_checkpoint_being_written_is_never_read(run, tmp_path):
    """evaluate/export/predict beside a training that is writing step 2: they rebuild from the newest checkpoint
    the state file lists (step 1), and never read the write in progress (its _temp folder, an unlisted index)."""
    from mgml_tf.training import model_dir as md

    copy = str(tmp_path / "run")
    shutil.copytree(run["model_dir"], copy)
    clean, _, listed = md.build_from_dir(copy, log=lambda m: None)
    folder = os.path.join(copy, "checkpoints")
    os.makedirs(os.path.join(folder, "ckpt-2_temp"))
    with open(os.path.join(folder, "ckpt-2_temp", "part-00000-of-00001.data-00000-of-00001"), "wb") as f:
        f.write(b"\0" * 64)
    for suffix in (".index", ".data-00000-of-00001"):
        with open(os.path.join(folder, "ckpt-2" + suffix), "wb") as f:
            f.write(b"half")
    messages = []
    model, _, path = md.build_from_dir(copy, log=messages.append)
    assert path == listed and path.endswith("ckpt-1")
    assert not [m for m in messages if "ckpt-2" in m]  # not tried and fallen back from: never looked at
    assert int(model.optimizer.iterations.numpy()) == 1
    for a, b in zip(model.weights, clean.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_checkpoint_architecture_of_deeplabv2(tmp_path):
    import mgml_tf
    from mgml_tf.training import checkpoints
    from mgml_tf.training import model_dir as md

    model = mgml_tf.build_model(
        backbone="resnet_small",
        head="deeplabv2",
        num_classes=5,
        feature_channels=8,
        aspp_rates=(1, 2),
        use_update_network=False,
    )
    model(tf.zeros([1, 32, 32, 3]))
    path = checkpoints.checkpoint_object(model).write(str(tmp_path / "ckpt-1"))
    assert md.checkpoint_architecture(path) == {
        "backbone": "resnet_small",
        "head": "deeplabv2",
        "num_classes": 5,
        "feature_channels": 8,
        "use_memory": True,
        "use_update_network": False,
        "memory_score_scale": "fixed",
        "aux_head": model.aux_head is not None,
    }


def test_train_with_another_head_refused_and_model_dir_unchanged(run):
    before = tree_hash(run["model_dir"])
    refused(
        run_cli(
            "train", *tiny_args(run["model_dir"], run["synth"], "--method=baseline", "--targets=", "--head=deeplabv2")
        ),
        "head=",
        "new --model_dir",
    )
    assert tree_hash(run["model_dir"]) == before


# ------------------------------------------------------------------------------------------ Python API
@pytest.mark.parametrize(
    "options, words",
    [
        (dict(backbone="nope"), ("backbone", "resnet50")),
        (dict(head="x"), ("head", "deeplabv3plus")),
        (dict(num_classes=1), ("num_classes",)),
        (dict(output_stride=7), ("output_stride",)),
        (dict(colour=3), ("unknown option", "colour")),
        (dict(backbone="resnet_small", backbone_weights="/nonexistent/w.keras"), ("/nonexistent/w.keras",)),
        (dict(backbone="resnet_small", backbone_weights=__file__), ("Unsupported weights file",)),
    ],
)
def test_build_model_refuses_bad_options(options, words):
    import mgml_tf

    with pytest.raises((ValueError, FileNotFoundError)) as e:
        mgml_tf.build_model(**options)
    for w in words:
        assert w in str(e.value), str(e.value)
