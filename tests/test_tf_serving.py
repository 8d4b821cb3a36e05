"""TF Serving (docs/SERVING.md): ``--export_version`` writes the numbered version folder TF Serving loads;
a REST ``:predict`` body, mapped onto the signature as TF Serving maps it, and a gRPC ``PredictRequest``
(``tensorflow-serving-api``) run through the loaded SavedModel and answer what the signature answers.

TF Serving's REST mapping (its REST API documentation): in the row format ``{"signature_name": S,
"instances": [...]}`` each instance is one example; with a single named input it is that input's value, and
the instances are stacked into one batch tensor of the input's dtype; the answer is ``{"predictions": [...]}``,
one object ``{output: value}`` per example when the signature has several outputs. In the columnar format
``{"inputs": {name: batch}}`` the answer is ``{"outputs": {name: batch}}``.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf import serving
from tests.cli_helpers import refused, run_cli, tiny_args


def rest_predict(loaded, body_text):
    """What TF Serving does with a REST ``:predict`` body: JSON -> tensors of the signature's dtypes -> the
    signature -> the JSON answer."""
    body = json.loads(body_text)
    signature = loaded.signatures[body.get("signature_name", "serving_default")]
    specs = signature.structured_input_signature[1]
    if "instances" in body:
        (name,) = specs  # one named input: each instance is its value
        inputs = {name: tf.constant(np.asarray(body["instances"]), dtype=specs[name].dtype)}
        outputs = signature(**inputs)
        n = int(inputs[name].shape[0])
        rows = [{k: v[i].numpy().tolist() for k, v in outputs.items()} for i in range(n)]
        return json.dumps({"predictions": rows})
    inputs = {k: tf.constant(np.asarray(v), dtype=specs[k].dtype) for k, v in body["inputs"].items()}
    return json.dumps({"outputs": {k: v.numpy().tolist() for k, v in signature(**inputs).items()}})


def grpc_predict(loaded, request):
    """What TF Serving does with a gRPC ``PredictRequest``: TensorProtos -> the signature -> a
    ``PredictResponse`` of TensorProtos."""
    from tensorflow_serving.apis import predict_pb2

    signature = loaded.signatures[request.model_spec.signature_name or "serving_default"]
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for k, v in signature(**inputs).items():
        response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
    return response


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A small model exported as TF Serving's version 3 in a base folder that also holds version 1."""
    from tests.helpers import small_model

    base = str(tmp_path_factory.mktemp("serving") / "mgml")
    model = small_model()
    serving.export(model, os.path.join(base, "1"))
    serving.export(model, os.path.join(base, "3"))
    return base, model


def test_the_highest_version_is_served(served):
    base, _ = served
    assert sorted(os.listdir(base)) == ["1", "3"]
    assert serving.served_version(base) == os.path.join(base, "3")
    assert serving.ServedModel.from_export_dir(base).source == os.path.join(base, "3")


@pytest.mark.parametrize("layout", ["row", "columnar"])
def test_rest_predict_body_runs_through_the_signature(served, layout):
    base, _ = served
    loaded = tf.saved_model.load(serving.served_version(base))
    images = np.random.default_rng(0).integers(0, 256, size=(2, 24, 40, 3), dtype=np.uint8)
    if layout == "row":
        body = json.dumps({"signature_name": "serving_default", "instances": images.tolist()})
    else:
        body = json.dumps({"signature_name": "serving_default", "inputs": {"images": images.tolist()}})
    answer = json.loads(rest_predict(loaded, body))
    want = loaded.signatures["serving_default"](images=tf.constant(images))
    if layout == "row":
        assert len(answer["predictions"]) == 2 and set(answer["predictions"][0]) == {"labels", "probabilities"}
        labels = np.array([row["labels"] for row in answer["predictions"]])
        probabilities = np.array([row["probabilities"] for row in answer["predictions"]])
    else:
        labels, probabilities = np.array(answer["outputs"]["labels"]), np.array(answer["outputs"]["probabilities"])
    np.testing.assert_array_equal(labels, want["labels"].numpy())
    np.testing.assert_allclose(probabilities, want["probabilities"].numpy(), atol=1e-6)
    assert labels.shape == (2, 24, 40)


def test_grpc_predict_request_runs_through_the_signature(served):
    from tensorflow_serving.apis import predict_pb2

    base, model = served
    loaded = tf.saved_model.load(serving.served_version(base))
    image = np.random.default_rng(1).integers(0, 256, size=(1, 30, 20, 3), dtype=np.uint8)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mgml"
    request.model_spec.signature_name = "memory_weights"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(image))
    response = predict_pb2.PredictResponse.FromString(grpc_predict(loaded, request).SerializeToString())
    weights = tf.make_ndarray(response.outputs["memory_weights"])
    labels = tf.make_ndarray(response.outputs["labels"])
    assert weights.shape == (1, 30, 20, model.num_classes) and labels.dtype == np.uint8
    want = loaded.signatures["memory_weights"](images=tf.constant(image))
    np.testing.assert_allclose(weights, want["memory_weights"].numpy(), atol=1e-6)


@pytest.mark.slow  # a training subprocess and three exports
def test_export_version_writes_the_tf_serving_layout(tmp_path):
    model_dir, synth, base = str(tmp_path / "run"), str(tmp_path / "synth"), str(tmp_path / "serving")
    run_cli("train", *tiny_args(model_dir, synth, "--train_steps=2", "--checkpoint_every=2", "--targets="), check=True)
    out = run_cli("export", f"--model_dir={model_dir}", f"--export_dir={base}", "--export_version=step", check=True)
    assert f"to {os.path.join(base, '2')};" in out.stdout
    run_cli("export", f"--model_dir={model_dir}", f"--export_dir={base}", "--export_version=7", check=True)
    assert sorted(os.listdir(base)) == ["2", "7"] and os.path.isfile(os.path.join(base, "7", "saved_model.pb"))
    again = run_cli("export", f"--model_dir={model_dir}", f"--export_dir={base}", "--export_version=7")
    refused(again, "version 7 exists", "--overwrite")
    bad = run_cli("export", f"--model_dir={model_dir}", f"--export_dir={base}", "--export_version=v1")
    refused(bad, "--export_version='v1' must be a version number")
    assert sorted(os.listdir(base)) == ["2", "7"]
