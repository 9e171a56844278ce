"""The Open Inference Protocol (KServe V2) spoken with its own client, `tritonclient[http]`, against a live server.

Nothing here is written by cnnkit on the client side: the health and metadata calls, JSON and
binary tensors, BYTES image files and the errors all go through Triton's client library, over
loopback, to a real uvicorn server.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

httpclient = pytest.importorskip("tritonclient.http")
pytest.importorskip("uvicorn")

from tritonclient.utils import InferenceServerException  # noqa: E402

from cnnkit.images import encode_png  # noqa: E402

from helpers import CLASSES, digits, live_server, tiny_predictor  # noqa: E402

MODEL = "digits"


@pytest.fixture(scope="module")
def predictor():
    return tiny_predictor()


@pytest.fixture(scope="module")
def server(predictor):
    with live_server(predictor, model_name=MODEL) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return httpclient.InferenceServerClient(server.removeprefix("http://"), network_timeout=20)


def test_health_and_metadata(client, predictor):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("cats")
    server = client.get_server_metadata()
    assert server["name"] == "cnnkit" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    assert {"name": "pixels", "datatype": "UINT8", "shape": [-1, 28, 28, 1]} in meta["inputs"]
    assert {"name": "images", "datatype": "BYTES", "shape": [-1]} in meta["inputs"]
    assert {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(CLASSES)]} in meta["outputs"]
    assert client.get_model_metadata(MODEL, "1") == meta


def _pixels_input(x: np.ndarray, binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput("pixels", list(x.shape), "UINT8")
    return tensor.set_data_from_numpy(x, binary_data=binary)


@pytest.mark.parametrize("binary", [False, True])
def test_infer_json_and_binary_tensors(client, predictor, binary):
    x = digits(5, seed=3)
    expected = predictor.predict_proba(x)
    result = client.infer(MODEL, [_pixels_input(x, binary)], request_id="req-7",
                          outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=binary),
                                   httpclient.InferRequestedOutput("label", binary_data=binary)])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5, atol=1e-6)
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]
    assert labels == [CLASSES[i] for i in expected.argmax(1)]
    assert result.get_response()["id"] == "req-7"


def test_infer_without_outputs_answers_every_output_in_binary(client, predictor):
    x = digits(2, seed=4)
    result = client.infer(MODEL, [_pixels_input(x, True)])  # the client then asks binary_data_output
    np.testing.assert_allclose(result.as_numpy("probabilities"), predictor.predict_proba(x), rtol=1e-5, atol=1e-6)
    assert all(o["parameters"]["binary_data_size"] > 0 for o in result.get_response()["outputs"])


@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_bytes_image_files(client, predictor, binary):
    x = digits(3, seed=5)
    files = np.array([encode_png(image[..., 0]) for image in x], dtype=object)
    tensor = httpclient.InferInput("images", [len(files)], "BYTES")
    if binary:
        tensor.set_data_from_numpy(files, binary_data=True)
    else:  # JSON can carry only text: each file as base64, as MLServer's base64 codec does
        import base64

        tensor.set_data_from_numpy(np.array([base64.b64encode(f) for f in files], dtype=object), binary_data=False)
    result = client.infer(MODEL, [tensor], outputs=[httpclient.InferRequestedOutput("probabilities")])
    expected = predictor.predict_proba(np.stack([predictor.decode(f) for f in files]))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5, atol=1e-6)


def test_classification_extension(client, predictor):
    x = digits(2, seed=6)
    result = client.infer(MODEL, [_pixels_input(x, True)],
                          outputs=[httpclient.InferRequestedOutput("probabilities", class_count=2)])
    top = result.as_numpy("probabilities")
    probs = predictor.predict_proba(x)
    assert top.shape == (2, 2)
    for row, entries in zip(probs, top):
        scores = [entry.decode().split(":") for entry in entries]
        assert [int(index) for _, index, _ in scores] == list(np.argsort(-row)[:2])
        assert [label for _, _, label in scores] == [CLASSES[i] for i in np.argsort(-row)[:2]]
        assert float(scores[0][0]) == pytest.approx(row.max(), abs=1e-5)


@pytest.mark.parametrize(("call", "fragment"), [
    (lambda c: c.infer(MODEL, [_pixels_input(np.zeros((1, 27, 28, 1), np.uint8), True)]), "shape=[1, 27, 28, 1]"),
    (lambda c: c.infer("cats", [_pixels_input(np.zeros((1, 28, 28, 1), np.uint8), False)]), "Unknown model"),
    (lambda c: c.get_model_metadata("cats"), "Unknown model"),
    (lambda c: c.infer(MODEL, [httpclient.InferInput("x", [1], "FP32").set_data_from_numpy(
        np.zeros(1, np.float32))]), "named 'pixels'"),
    (lambda c: c.infer(MODEL, [_pixels_input(np.zeros((1, 28, 28, 1), np.uint8), True)],
                       outputs=[httpclient.InferRequestedOutput("logits")]), "Unknown output"),
])
def test_errors_reach_the_client_as_the_protocols_error(client, call, fragment):
    with pytest.raises(InferenceServerException) as excinfo:
        call(client)
    assert fragment in excinfo.value.message(), excinfo.value.message()
    assert "exception occurred in the client" not in excinfo.value.message()


def test_a_bytes_element_that_is_not_an_image_is_a_clear_error(client):
    tensor = httpclient.InferInput("images", [1], "BYTES").set_data_from_numpy(np.array([b"not a png"], dtype=object))
    with pytest.raises(InferenceServerException) as excinfo:
        client.infer(MODEL, [tensor])
    assert excinfo.value.status() == "422" and "images[0]" in excinfo.value.message()


def test_binary_parts_that_lie_about_their_length_are_422(server):
    import httpx

    header = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 28, 28, 1], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": 784}}]}).encode()
    images = json.dumps({"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    cases = {  # body, Inference-Header-Content-Length, what the answer says
        "short data": (header + bytes(700), len(header), "Received: binary_data_size=784, 700 bytes"),
        "header past the body": (header + bytes(784), len(header) + 10_000, "Inference-Header-Content-Length"),
        "header not a number": (header + bytes(784), "12x", "Received: '12x'"),
        "header inside the JSON": (header + bytes(784), 10, "not valid"),
        "element longer than the data": (images + struct.pack("<I", 1 << 30) + b"abcd", len(images),
                                         "declares 1,073,741,824 bytes"),
    }
    with httpx.Client(base_url=server, timeout=10) as http:
        for name, (body, length, fragment) in cases.items():
            response = http.post(f"/v2/models/{MODEL}/infer", content=body,
                                 headers={"Inference-Header-Content-Length": str(length)})
            assert response.status_code == 422 and set(response.json()) == {"error"}, (name, response.text)
            assert fragment in response.json()["error"], (name, response.text)
