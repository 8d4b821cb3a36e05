"""ONNX and LiteRT exports (docs/EXPORT.md): the file run by ONNX Runtime or the LiteRT interpreter gives the
Keras model's probabilities (1e-4) on random uint8 images of several sizes and batches; the dilated-convolution
padding rewrite is exact; the CLI writes each format; its refusals are one line and write nothing."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf import export_formats
from tests.cli_helpers import run_cli, tiny_args

FORMATS = ("onnx", "litert")


def keras_probabilities(model, images):
    return tf.nn.softmax(model(tf.constant(images, tf.float32), training=False), axis=-1).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One small model (dilated backbone stage and ASPP, memory) exported once to each format."""
    from tests.helpers import small_model

    model = small_model()
    root = tmp_path_factory.mktemp("formats")
    dirs = {fmt: str(root / fmt) for fmt in FORMATS}
    metas = {fmt: export_formats.export(model, dirs[fmt], fmt, step=7) for fmt in FORMATS}
    return model, dirs, metas


@pytest.mark.slow  # the two conversions (about 20 s each) happen in the fixture
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", [(1, 67, 91, 3), (2, 33, 48, 3), (1, 1, 1, 3)])
def test_exported_file_agrees_with_the_keras_model(exported, fmt, shape):
    model, dirs, _ = exported
    images = np.random.default_rng(sum(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    got = export_formats.load(dirs[fmt])(images)
    want = keras_probabilities(model, images)
    assert got["probabilities"].shape == want.shape and got["probabilities"].dtype == np.float32
    np.testing.assert_allclose(got["probabilities"], want, rtol=0, atol=1e-4)
    assert got["labels"].dtype == np.uint8
    np.testing.assert_array_equal(got["labels"], np.argmax(got["probabilities"], axis=-1))


@pytest.mark.slow  # uses the exports of the fixture
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_folder_holds_the_file_and_its_metadata(exported, fmt):
    model, dirs, metas = exported
    assert sorted(os.listdir(dirs[fmt])) == sorted([export_formats.METADATA, export_formats.FILE_NAMES[fmt]])
    meta = export_formats.read_metadata(dirs[fmt])
    assert meta["format"] == fmt and meta["step"] == 7 and meta["num_classes"] == model.num_classes
    assert len(meta["class_names"]) == len(meta["palette"]) == model.num_classes
    assert meta["max_probability_difference"] == metas[fmt]["max_probability_difference"] < 1e-4
    assert not [name for name in os.listdir(os.path.dirname(dirs[fmt])) if ".partial-" in name]
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(os.path.join(dirs[fmt], "model.onnx")).metadata_props}
        assert json.loads(props["mgml_tf"])["class_names"] == meta["class_names"]


def test_dilated_same_padding_becomes_explicit_and_exact():
    """ONNX Runtime refuses dilation with auto_pad=SAME_UPPER; the rewrite gives TensorFlow's SAME at any size."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)  # HWIO, as TensorFlow
    conv = helper.make_node(
        "Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", dilations=[2, 3], strides=[1, 1], kernel_shape=[3, 3]
    )
    graph = helper.make_graph(
        [conv],
        "dilated",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, None, None])],
        initializer=[numpy_helper.from_array(kernel.transpose(3, 2, 0, 1), "w")],  # OIHW
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(1, 2, 9, 10)).astype(np.float32)
    with pytest.raises(Exception, match="Dilation not supported"):
        session.run(None, {"x": x})

    assert export_formats.explicit_dilated_padding(model) == 1
    onnx.checker.check_model(model)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for height, width in [(9, 10), (4, 7), (1, 1)]:
        x = rng.normal(size=(1, height, width, 2)).astype(np.float32)
        want = tf.nn.conv2d(x, kernel, strides=1, padding="SAME", dilations=[2, 3]).numpy()
        (got,) = session.run(None, {"x": x.transpose(0, 3, 1, 2)})
        np.testing.assert_allclose(got.transpose(0, 2, 3, 1), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((8, 8, 3), np.uint8),  # the LiteRT interpreter would reshape its input to this and run
        np.zeros((1, 8, 8, 4), np.uint8),
        np.zeros((1, 8, 8, 3), np.float32),
        np.zeros((1, 0, 8, 3), np.uint8),
    ],
)
def test_runner_refuses_what_the_savedmodel_refuses(images):
    with pytest.raises(ValueError, match=r"uint8 \[batch, height, width, 3\]"):
        export_formats.checked_images(images)


def run_export(capfd, *args):
    """``mgml_tf.export`` in this process: (exit status, stderr lines)."""
    from mgml_tf.cli import common
    from mgml_tf.cli.export import PROG, main

    with pytest.raises(SystemExit) as exit_:
        common.run(PROG, main, [PROG, *args])
    return exit_.value.code, [line for line in capfd.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "extra, missing, words",
    [
        (("--format=tensorrt",), None, ("--format=tensorrt", "savedmodel, onnx, litert")),
        (("--format=onnx", "--export_version=1"), None, ("--export_version", "--format=onnx")),
        (("--format=onnx",), "onnxruntime", ("onnxruntime", "pip install 'mgml_tf[onnx]'")),
        (("--format=litert",), "ai_edge_litert", ("ai_edge_litert", "pip install 'mgml_tf[litert]'")),
    ],
)
def test_refusals_are_one_line_and_write_nothing(tmp_path, capfd, monkeypatch, extra, missing, words):
    import importlib.util

    if missing:
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name))
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    status, lines = run_export(capfd, f"--model_dir={model_dir}", f"--export_dir={tmp_path / 'out'}", *extra)
    assert status == 2 and len(lines) == 1, lines
    assert all(w in lines[0] for w in words), lines[0]
    assert sorted(os.listdir(tmp_path)) == ["run"] and not os.listdir(model_dir)


@pytest.mark.slow  # a training subprocess and two export subprocesses
def test_cli_writes_each_format(tmp_path):
    model_dir, synth = str(tmp_path / "run"), str(tmp_path / "synth")
    run_cli("train", *tiny_args(model_dir, synth, "--train_steps=2", "--checkpoint_every=2", "--targets="), check=True)
    for fmt in FORMATS:
        out = str(tmp_path / fmt)
        proc = run_cli("export", f"--model_dir={model_dir}", f"--export_dir={out}", f"--format={fmt}", check=True)
        path = os.path.join(out, export_formats.FILE_NAMES[fmt])
        assert f"(step 2) to {path};" in proc.stdout and not proc.stderr.strip(), proc.stderr
        images = np.random.default_rng(3).integers(0, 256, size=(1, 40, 56, 3), dtype=np.uint8)
        assert export_formats.load(out)(images)["labels"].shape == (1, 40, 56)
        assert export_formats.read_metadata(out)["num_classes"] == 19


def test_erfc_converts_to_onnx_as_one_minus_erf():
    """The exact GELU of the DINOv2/DINOv3 MLPs is 0.5 x erfc(-x / sqrt(2)); tf2onnx 1.17 alone has no Erfc."""
    import onnxruntime
    import tf2onnx

    export_formats.register_erfc_conversion()
    spec = [tf.TensorSpec([None], tf.float32, name="x")]

    @tf.function(input_signature=spec)
    def gelu_and_erfc(x):
        return {"gelu": tf.nn.gelu(x, approximate=False), "erfc": tf.math.erfc(x)}

    with export_formats._converter_quiet():
        model, _ = tf2onnx.convert.from_function(gelu_and_erfc, input_signature=spec)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.linspace(-6, 6, 97).astype(np.float32)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x})))
    want = {k: v.numpy() for k, v in gelu_and_erfc(tf.constant(x)).items()}
    np.testing.assert_allclose(got["gelu"], want["gelu"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["erfc"], want["erfc"], rtol=0, atol=1e-6)
