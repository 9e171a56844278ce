"""Hostile input: 500+ generated bad requests against a real server on loopback → only 4xx, JSON.

Every request is generated here from a seed (truncated, polyglot, oversized and bomb images,
wrong content types, empty bodies, huge multipart parts, malformed KServe V2 JSON). The
server must answer each with a 4xx and a JSON body ``{code, message}`` (never a 500, never
a dropped connection), and still be ready afterwards.
"""

from __future__ import annotations

import io
import json
import socket
import threading

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from cnnkit.images import encode_png  # noqa: E402
from cnnkit.server import ServerSettings, create_app  # noqa: E402
from cnnkit.server.cli import build_server  # noqa: E402
from helpers import LIMIT_MB, png_header_bomb, tiny_predictor, wait_ready_http  # noqa: E402

LIMIT_BYTES = int(LIMIT_MB * 2**20)
N_REQUESTS = 520


def _jpeg(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def hostile_requests(seed: int = 0) -> list[tuple[str, dict]]:
    """(kind, httpx request kwargs) pairs, cycling through every kind of hostile input."""
    rng = np.random.default_rng(seed)
    png = encode_png(rng.integers(0, 256, (28, 28), dtype=np.uint8))
    image = {"content-type": "image/png"}
    kinds = {
        # Cut before the image data ends (IDAT's CRC and IEND are the last 16 bytes): a PNG missing
        # only its IEND trailer still holds a whole image, and decoding it is right.
        "truncated png": lambda: {"content": png[: int(rng.integers(1, len(png) - 16))], "headers": image},
        "truncated jpeg": lambda: {"content": (j := _jpeg(rng))[: int(rng.integers(1, len(j) - 2))],
                                   "headers": {"content-type": "image/jpeg"}},
        "random bytes": lambda: {"content": rng.bytes(int(rng.integers(1, 4000))), "headers": image},
        "polyglot png+zip": lambda: {"content": png[:33] + b"PK\x03\x04" + rng.bytes(200), "headers": image},
        "polyglot gif+html": lambda: {"content": b"GIF89a<html><script>alert(1)</script>" + rng.bytes(50),
                                      "headers": {"content-type": "image/gif"}},
        "bomb header": lambda: {"content": png_header_bomb(int(rng.integers(20_000, 60_000)),
                                                           int(rng.integers(20_000, 60_000))), "headers": image},
        "oversized body": lambda: {"content": rng.bytes(LIMIT_BYTES + int(rng.integers(1, 50_000))),
                                   "headers": image},
        "empty body": lambda: {"content": b"", "headers": image},
        "wrong content type": lambda: {"content": png, "headers": {"content-type": str(rng.choice(
            ["text/plain", "application/json", "application/octet-stream", "video/mp4", "application/xml"]))}},
        "no content type": lambda: {"content": png, "headers": {}},
        "huge multipart part": lambda: {"files": {"file": ("big.png", rng.bytes(LIMIT_BYTES + 10_000), "image/png")}},
        "multipart wrong field": lambda: {"files": {"photo": ("d.png", png, "image/png")}},
        "multipart broken file": lambda: {"files": {"file": ("d.png", rng.bytes(300), "image/png")}},
        "v2 junk json": lambda: {"url": "/v2/models/digits/infer", "content": rng.bytes(100),
                                 "headers": {"content-type": "application/json"}},
        "v2 wrong shape": lambda: {"url": "/v2/models/digits/infer", "json": {"inputs": [{
            "name": "pixels", "shape": [1, 27, 28, 1], "datatype": "UINT8", "data": [0] * (27 * 28)}]}},
        "v2 wrong datatype": lambda: {"url": "/v2/models/digits/infer", "json": {"inputs": [{
            "name": "pixels", "shape": [1, 28, 28, 1], "datatype": str(rng.choice(["FP32", "BYTES", "INT64", "x"])),
            "data": [0] * 784}]}},
        "v2 data/shape mismatch": lambda: {"url": "/v2/models/digits/infer", "json": {"inputs": [{
            "name": "pixels", "shape": [2, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}]}},
        "v2 out of range": lambda: {"url": "/v2/models/digits/infer", "json": {"inputs": [{
            "name": "pixels", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [300] * 784}]}},
        "v2 missing inputs": lambda: {"url": "/v2/models/digits/infer", "json": {"outputs": []}},
        "v2 unknown model": lambda: {"url": "/v2/models/nope/infer", "json": {"inputs": []}},
    }
    names = list(kinds)
    return [(names[i % len(names)], kinds[names[i % len(names)]]()) for i in range(N_REQUESTS)]


@pytest.fixture(scope="module")
def live_server():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # loopback only
    port = sock.getsockname()[1]
    settings = ServerSettings(port=port, model_name="digits", max_body_mb=LIMIT_MB)
    server = build_server(create_app(tiny_predictor(), settings), settings, log_level="error")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=10) as http:
        wait_ready_http(http)
    yield base
    server.should_exit = True
    thread.join(15)


def test_hostile_requests_get_4xx_json_and_the_server_stays_ready(live_server):
    requests = hostile_requests()
    statuses: dict[str, set[int]] = {}
    with httpx.Client(base_url=live_server, timeout=20) as http:
        for kind, kwargs in requests:
            url = kwargs.pop("url", "/v1/predict")
            response = http.post(url, **kwargs)
            statuses.setdefault(kind, set()).add(response.status_code)
            assert 400 <= response.status_code < 500, (kind, response.status_code, response.text[:300])
            body = response.json()
            assert body["code"] == response.status_code and body["message"], (kind, body)
            assert "Traceback" not in body["message"]
        assert http.get("/readyz").status_code == 200
        good = http.post("/v1/predict", content=encode_png(np.zeros((28, 28), np.uint8)),
                         headers={"content-type": "image/png"})
        assert good.status_code == 200
    assert len(requests) >= 500
    # The expected family of answers, kind by kind (a kind may legitimately land on two codes).
    assert statuses["oversized body"] == {413} and statuses["huge multipart part"] == {413}
    assert statuses["wrong content type"] == {415} and statuses["v2 unknown model"] == {404}
    assert statuses["bomb header"] == {422} and statuses["truncated png"] == {422}
    print(json.dumps({k: sorted(v) for k, v in statuses.items()}))
