"""The HTTP service in-process (Starlette TestClient): endpoints, numbers, and every error's JSON."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
with warnings.catch_warnings():  # Starlette 1.10 prefers httpx2; httpx 0.28.1 is the pinned, working client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from cnnkit.images import encode_png
from cnnkit.predictor import Predictor
from cnnkit.server import ServerSettings, create_app
from cnnkit.server.app import ROUTES

from helpers import CLASSES, LIMIT_MB, check_route, digits, fake_engine, png_header_bomb, tiny_predictor, wait_ready

pytestmark = pytest.mark.backends  # also run on JAX: covers the non-TensorFlow inference path

LIMIT = f"{int(LIMIT_MB * 2**20):,} bytes"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return tiny_predictor()


@pytest.fixture(scope="module")
def client(predictor):
    app = create_app(predictor, ServerSettings(model_name="digits", max_body_mb=LIMIT_MB, max_wait_ms=1))
    with TestClient(app) as test_client:
        wait_ready(test_client)
        yield test_client


# -- happy paths ---------------------------------------------------------------------------------

def test_readyz_is_503_until_started_and_warmed_up(predictor):
    app = create_app(predictor, ServerSettings(), engine=fake_engine(lambda x: np.full((len(x), 3), 1 / 3, np.float32)))
    cold = TestClient(app)  # no lifespan: the model is not warmed up
    check_route(cold.get("/readyz"), 503, "warming up")
    assert cold.get("/livez").status_code == 200
    check_route(cold.post("/v1/predict", content=encode_png(digits(1)[0]), headers={"content-type": "image/png"}),
                503, "Retry shortly")
    with TestClient(app) as warm:
        wait_ready(warm)
        assert warm.get("/readyz").json()["status"] == "ready"
    assert app.state.service.batcher.ready is False  # drained and stopped


def test_startup_puts_what_is_loaded_out_of_the_garbage_collectors_reach(client):
    import gc

    # The lifespan froze it (client started the app): a full collection no longer walks the model and
    # its frameworks, the ~200 ms pause that made the p99 under load.
    assert gc.get_freeze_count() > 10_000


def test_models_and_livez(client):
    assert client.get("/livez").json() == {"status": "alive"}
    [model] = client.get("/v1/models").json()["models"]
    assert model == {"name": "digits", "version": "1", "class_names": CLASSES, "input_shape": [28, 28, 1],
                     "color_mode": "grayscale", "resize": "stretch", "tta": {}, "engine": {"name": "keras"}}


def test_raw_png_matches_predict_proba(client, predictor):
    pixels = digits(1, seed=1)
    response = client.post("/v1/predict?top_k=2", content=encode_png(pixels[0]), headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "digits", "version": "1"}
    [pred] = body["predictions"]
    expected = predictor.predict_proba(pixels)[0]
    assert len(pred["top_k"]) == 2 and pred["top_k"][0] == {"label": pred["label"], "probability": pred["probability"]}
    for pair in pred["top_k"]:
        assert pair["probability"] == pytest.approx(expected[CLASSES.index(pair["label"])], abs=1e-6)
    assert pred["label"] == CLASSES[int(np.argmax(expected))]


def test_multipart_three_files_in_order(client, predictor):
    pixels = digits(3, seed=2)
    files = [("file", (f"d{i}.png", encode_png(p), "image/png")) for i, p in enumerate(pixels)]
    response = client.post("/v1/predict?top_k=3", files=files)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = predictor.predict_proba(pixels)
    assert len(predictions) == 3
    for pred, row in zip(predictions, expected):
        got = {p["label"]: p["probability"] for p in pred["top_k"]}
        np.testing.assert_allclose([got[c] for c in CLASSES], row, atol=1e-6)


@pytest.mark.parametrize("nested", [False, True])
def test_v2_round_trip(client, predictor, nested):
    pixels = digits(2, seed=3)
    data = pixels.tolist() if nested else pixels.ravel().tolist()
    request = {"id": "req-7",
               "inputs": [{"name": "pixels", "shape": [2, 28, 28, 1], "datatype": "UINT8", "data": data}]}
    response = client.post("/v2/models/digits/versions/1/infer" if nested else "/v2/models/digits/infer", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-7" and body["model_name"] == "digits" and body["model_version"] == "1"
    output, label = body["outputs"]  # no "outputs" asked: all of them
    assert output["name"] == "probabilities" and output["datatype"] == "FP32" and output["shape"] == [2, 3]
    expected = predictor.predict_proba(pixels)
    np.testing.assert_allclose(np.reshape(output["data"], (2, 3)), expected, atol=1e-6)
    assert label == {"name": "label", "datatype": "BYTES", "shape": [2],
                     "data": [predictor.class_names[i] for i in expected.argmax(1)]}


def test_metrics_count_requests_and_batches(client):
    client.post("/v1/predict", content=encode_png(digits(1)[0]), headers={"content-type": "image/png"})
    client.post("/v1/predict", content=b"not an image", headers={"content-type": "image/png"})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'cnnkit_http_requests_total{method="POST",path="/v1/predict",status="200"}' in text
    assert 'cnnkit_http_requests_total{method="POST",path="/v1/predict",status="422"}' in text
    assert 'cnnkit_http_errors_total{code="422"}' in text
    assert 'cnnkit_http_request_duration_seconds_bucket{le="0.25",path="/v1/predict"}' in text
    assert "cnnkit_batch_size_count" in text and "cnnkit_ready 1.0" in text


# -- errors: every one is JSON {"code", "message"} ---------------------------------------------------

BIG = b"\x89PNG" + b"\0" * 60_000  # over the limit


def _chunks():
    for _ in range(6):
        yield b"\0" * 10_000


def _v2(**tensor):
    base = {"name": "pixels", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}
    return {"json": {"inputs": [{**base, **tensor}]}}


PNG = encode_png(digits(1)[0])
IMAGE = {"content-type": "image/png"}
ERROR_CASES = {
    "413 Content-Length": ("/v1/predict", {"content": BIG, "headers": IMAGE}, 413, "Content-Length: 60,004 bytes"),
    "413 chunked": ("/v1/predict", {"content": _chunks, "headers": IMAGE}, 413, f"more than {LIMIT}"),
    "413 lying length": ("/v1/predict", {"content": BIG, "headers": {**IMAGE, "content-length": "100"}}, 413,
                         "Content-Length said 100"),
    "413 multipart": ("/v1/predict", {"files": [("file", ("big.png", BIG, "image/png"))]}, 413, "--max-body-mb"),
    "413 v2": ("/v2/models/digits/infer", {"content": BIG, "headers": {"content-type": "application/json"}}, 413,
               f"limit is {LIMIT}"),
    "415 text": ("/v1/predict", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "'text/plain'"),
    "415 none": ("/v1/predict", {"content": b"hello"}, 415, "Unsupported Content-Type. Received: None"),
    "415 v2 form": ("/v2/models/digits/infer", {"data": {"a": "b"}}, 415, "application/json"),
    "422 text as png": ("/v1/predict", {"content": b"hello", "headers": IMAGE}, 422, "Cannot decode image"),
    "422 truncated png": ("/v1/predict", {"content": PNG[: len(PNG) // 2], "headers": IMAGE}, 422,
                          "Cannot decode image"),
    "422 empty body": ("/v1/predict", {"content": b"", "headers": IMAGE}, 422, "empty image (0 bytes)"),
    "422 bomb": ("/v1/predict", {"content": png_header_bomb(), "headers": IMAGE}, 422,
                 "Image is too large: 9000x9000 pixels"),
    "422 bad file in multipart": ("/v1/predict", {"files": [("file", ("a.png", PNG, "image/png")),
                                                            ("file", ("b.png", b"junk", "image/png"))]},
                                  422, "b.png: Cannot decode image"),
    "422 no file field": ("/v1/predict", {"files": [("image", ("a.png", PNG, "image/png"))]}, 422,
                          "No image in field 'file'. Received fields: ['image']"),
    "422 top_k": ("/v1/predict?top_k=zero", {"content": PNG, "headers": IMAGE}, 422, "top_k='zero'"),
    "422 v2 not json": ("/v2/models/digits/infer",
                        {"content": b"{oops", "headers": {"content-type": "application/json"}},
                        422, "JSON is not valid"),
    "422 v2 no inputs": ("/v2/models/digits/infer", {"json": {"data": [1]}}, 422, "exactly one tensor"),
    "422 v2 datatype": ("/v2/models/digits/infer", _v2(datatype="FP32"), 422, 'Received: datatype="FP32"'),
    "422 v2 shape": ("/v2/models/digits/infer", _v2(shape=[1, 32, 32, 3]), 422,
                     "of shape [N, 28, 28, 1] with N >= 1. Received: shape=[1, 32, 32, 3]"),
    "422 v2 count": ("/v2/models/digits/infer", _v2(data=[0] * 10), 422, "holds 10 values but shape"),
    "422 v2 range": ("/v2/models/digits/infer", _v2(data=[256] * 784), 422, "values from 256 to 256"),
    "422 v2 floats": ("/v2/models/digits/infer", _v2(data=[0.5] * 784), 422, "list of integers 0-255"),
    "422 v2 ragged": ("/v2/models/digits/infer", _v2(data=[[1, 2], [3]]), 422, "list of integers 0-255"),
    "422 v2 input name": ("/v2/models/digits/infer", _v2(name="x"), 422, "named 'pixels'"),
    "404 v2 model": ("/v2/models/cats/infer", _v2(), 404, "Received: 'cats'"),
    "404 v2 version": ("/v2/models/digits/versions/9/infer", _v2(), 404, "version 9"),
    "404 path": ("/v3/anything", {}, 404, "No such endpoint"),
    "404 v2 path": ("/v2/anything", {}, 404, "No such endpoint"),
    "422 v2 deep JSON": ("/v2/models/digits/infer", {"content": b"[" * 20_000 + b"]" * 20_000,
                                                     "headers": {"content-type": "application/json"}},
                         422, "nested too deeply"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_are_json_with_code_and_message(client, case):
    path, kwargs, code, pattern = ERROR_CASES[case]
    kwargs = {k: (v() if callable(v) else v) for k, v in kwargs.items()}
    check_route(client.post(path, **kwargs), code, *pattern.split("|"))


@pytest.mark.parametrize("method,path,handler", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_route_answers_errors_in_one_shape(client, method, path, handler):
    url = path.format(name="digits", version="1")
    refused = client.request("PUT", url)
    check_route(refused, 405, "Method not allowed. Received: PUT")
    assert method in refused.headers["allow"] and method in check_route(refused, 405)["message"]
    if method == "POST":  # a body of the wrong type: refused before anything is parsed
        check_route(client.post(url, content=b"x", headers={"content-type": "text/plain"}), 415, "text/plain")
    else:
        assert client.get(url).status_code == 200


def test_queue_full_is_503_with_retry_after(predictor):
    gate, started, busy = threading.Event(), threading.Event(), threading.Event()

    def slow_infer(pixels: np.ndarray) -> np.ndarray:
        if busy.is_set():  # warm-up passes straight through
            started.set()
            gate.wait(10)
        return np.full((len(pixels), 3), 1 / 3, np.float32)

    settings = ServerSettings(queue_size=1, max_wait_ms=0, retry_after_s=2)
    app = create_app(predictor, settings, engine=fake_engine(slow_infer))
    post = {"url": "/v1/predict", "content": PNG, "headers": IMAGE}
    with TestClient(app) as client:
        wait_ready(client)
        busy.set()
        results: list[int] = []
        first = threading.Thread(target=lambda: results.append(client.post(**post).status_code))
        first.start()
        assert started.wait(10)  # the model is busy with request 1
        second = threading.Thread(target=lambda: results.append(client.post(**post).status_code))
        second.start()
        deadline = time.monotonic() + 10
        while app.state.service.batcher._queue.qsize() < 1:  # request 2 fills the queue
            assert time.monotonic() < deadline
            time.sleep(0.005)
        refused = client.post(**post)
        gate.set()
        first.join(10)
        second.join(10)
    check_route(refused, 503, "Server busy")
    assert refused.headers["retry-after"] == "2"
    assert results == [200, 200]


def test_unexpected_failure_is_500_without_internals(predictor, caplog):
    def broken(pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 1 and pixels[0, 0, 0, 0] == 7:
            raise RuntimeError("secret internal detail")
        return np.full((len(pixels), 3), 1 / 3, np.float32)

    image = np.zeros((28, 28, 1), np.uint8)
    image[0, 0, 0] = 7
    with TestClient(create_app(predictor, ServerSettings(), engine=fake_engine(broken))) as client:
        wait_ready(client)
        response = client.post("/v1/predict", content=encode_png(image), headers=IMAGE)
        assert client.get("/livez").status_code == 200  # the server survives
    check_route(response, 500, "Internal server error")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert "secret internal detail" in caplog.text  # ... but the operator sees it


def test_concurrent_requests_share_a_model_call(predictor):
    app = create_app(predictor, ServerSettings(max_wait_ms=50, max_batch_size=32))
    with TestClient(app) as client:
        wait_ready(client)
        codes: list[int] = []
        threads = [threading.Thread(target=lambda: codes.append(client.post("/v1/predict", content=PNG,
                                                                            headers=IMAGE).status_code))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        metrics = app.state.service.metrics
    assert codes == [200] * 8
    calls = metrics.registry.get_sample_value("cnnkit_batch_size_count")
    single = metrics.registry.get_sample_value("cnnkit_batch_size_bucket", {"le": "1.0"})
    assert calls - single >= 1, f"{calls} model calls, all of batch size 1"
    assert calls < 8


def test_pixel_limit_bounds_each_decode(predictor):
    """A small file that decodes to many pixels is refused before decoding (memory per request)."""
    big = encode_png(np.zeros((300, 300), np.uint8))  # a few hundred bytes, 90,000 pixels
    with TestClient(create_app(predictor, ServerSettings(max_image_pixels=50_000))) as client:
        wait_ready(client)
        refused = client.post("/v1/predict", content=big, headers=IMAGE)
        accepted = client.post("/v1/predict", content=encode_png(np.zeros((200, 200), np.uint8)), headers=IMAGE)
    check_route(refused, 422, "exceeds the limit of 50,000")
    assert accepted.status_code == 200
