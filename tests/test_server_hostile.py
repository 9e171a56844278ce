"""Hostile input: 1,000+ generated bad requests against a real server on loopback → only 4xx, JSON.

Every request is generated here from a seed (truncated, polyglot, oversized and bomb images,
wrong content types, empty bodies, huge multipart parts, malformed Open Inference Protocol
requests: deep JSON nesting, huge declared shapes, binary parts whose headers lie about their
lengths; bad bearer tokens). The server runs with an API key; every request but the bad-token ones
bears it. The server must answer each with a 4xx and a JSON error body (``{code, message}``, the
protocol's ``{error}`` on ``/v2``; never a 500, never a dropped connection), and still answer a
valid image afterwards.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from cnnkit.images import encode_png  # noqa: E402

from helpers import LIMIT_MB, check_route, png_header_bomb, tiny_predictor  # noqa: E402
from helpers import live_server as serve  # noqa: E402

LIMIT_BYTES = int(LIMIT_MB * 2**20)
N_REQUESTS = 1040
KEY = "hostile-battery-key-0123456789"
INFER = "/v2/models/digits/infer"


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
        # Cut before the image data ends (IDAT's CRC and IEND are the last 16 bytes, zlib's Adler-32 the 4
        # before them): a PNG missing only its checksums and IEND trailer still holds a whole image, and
        # decoding it is right.
        "truncated png": lambda: {"content": png[: int(rng.integers(1, len(png) - 20))], "headers": image},
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
        "v2 deep nesting": lambda: {"url": INFER, "headers": {"content-type": "application/json"}, "content": (
            lambda depth: b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}")(int(rng.integers(2_000, 20_000)))},
        "v2 deep data": lambda: {"url": INFER, "content": json.dumps({"inputs": [{
            "name": "pixels", "shape": [1, 28, 28, 1], "datatype": "UINT8"}]}).replace(
            '"UINT8"', '"UINT8", "data": ' + "[" * 900 + "0" + "]" * 900).encode(),
            "headers": {"content-type": "application/json"}},
        "v2 huge shape": lambda: {"url": INFER, "json": {"inputs": [{
            "name": str(rng.choice(["pixels", "images"])), "datatype": str(rng.choice(["UINT8", "BYTES"])),
            "shape": [int(rng.integers(10**9, 10**15)), *([28, 28, 1] if rng.random() < 0.5 else [])],
            "data": [0] * 784}]}},
        "v2 binary lies": lambda: _binary_lie(rng),
        "v2 bad outputs": lambda: {"url": INFER, "json": {"inputs": [{
            "name": "pixels", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}],
            "outputs": [{"name": str(rng.choice(["logits", "probabilities"])),
                         "parameters": {"classification": str(rng.choice(["-1", "x"]))}}]}},
        "v2 bytes not images": lambda: {"url": INFER, "json": {"inputs": [{
            "name": "images", "shape": [1], "datatype": "BYTES", "data": [str(rng.choice(["aGVsbG8=", "!!", ""]))]}]}},
        "no token": lambda: {"auth": None, "url": str(rng.choice([INFER, "/v1/predict", "/v2", "/metrics"])),
                             "content": png, "headers": image},
        "wrong token": lambda: {"auth": str(rng.choice([f"Bearer {KEY[:-1]}", f"Bearer {KEY}x", f"Basic {KEY}",
                                                        "Bearer", KEY, "Bearer " + "A" * 4000])),
                                "url": str(rng.choice([INFER, "/v1/predict"])), "content": png, "headers": image},
    }
    names = list(kinds)
    return [(names[i % len(names)], kinds[names[i % len(names)]]()) for i in range(N_REQUESTS)]


def _binary_lie(rng: np.random.Generator) -> dict:
    """A binary-extension request whose header or sizes do not add up to the body."""
    declared = int(rng.integers(0, 2_000))
    header = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 28, 28, 1], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": declared}}]}).encode()
    body = header + rng.bytes(int(rng.integers(0, 2_000)))
    length = str(rng.choice([str(len(header) + int(rng.integers(-20, 20))), str(len(body) + 1), "-5", "0", "",
                             "1e3", str(10**30)]))
    return {"url": INFER, "content": body, "headers": {"inference-header-content-length": length}}


@pytest.fixture(scope="module")
def live_server():
    with serve(tiny_predictor(), model_name="digits", max_body_mb=LIMIT_MB, api_key=KEY) as base:
        yield base


def test_hostile_requests_get_4xx_json_and_the_server_stays_ready(live_server):
    requests = hostile_requests()
    statuses: dict[str, set[int]] = {}
    with httpx.Client(base_url=live_server, timeout=20) as http:
        for kind, kwargs in requests:
            url = kwargs.pop("url", "/v1/predict")
            auth = kwargs.pop("auth", f"Bearer {KEY}")
            headers = {**kwargs.pop("headers", {}), **({"authorization": auth} if auth else {})}
            response = http.request("GET" if url in ("/v2", "/metrics") else "POST", url, headers=headers, **kwargs)
            statuses.setdefault(kind, set()).add(response.status_code)
            assert 400 <= response.status_code < 500, (kind, response.status_code, response.text[:300])
            check_route(response, response.status_code)
        assert http.get("/readyz").status_code == 200  # the probes need no key
        good = http.post("/v1/predict", content=encode_png(np.zeros((28, 28), np.uint8)),
                         headers={"content-type": "image/png", "authorization": f"Bearer {KEY}"})
        assert good.status_code == 200
    assert len(requests) >= 1000
    # The expected family of answers, kind by kind (a kind may legitimately land on two codes).
    assert statuses["oversized body"] == {413} and statuses["huge multipart part"] == {413}
    assert statuses["wrong content type"] == {415} and statuses["v2 unknown model"] == {404}
    assert statuses["bomb header"] == {422} and statuses["truncated png"] == {422}
    assert statuses["no token"] == statuses["wrong token"] == {401}
    assert statuses["v2 deep nesting"] == statuses["v2 huge shape"] == statuses["v2 binary lies"] == {422}
    print(json.dumps({k: sorted(v) for k, v in statuses.items()}))
