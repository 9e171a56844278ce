"""Access control and traces: the API key (probes open), CORS only when asked, a request id and one log line."""

from __future__ import annotations

import json
import logging
import re
import warnings

import pytest

pytest.importorskip("starlette")

with warnings.catch_warnings():  # Starlette 1.10 prefers httpx2; httpx 0.28.1 is the pinned, working client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from cnnkit.errors import ConfigError
from cnnkit.images import encode_png
from cnnkit.server import ServerSettings, create_app

from helpers import check_route, digits, tiny_predictor

KEY = "s3cret-key-for-tests-0123456789"
PNG = {"content": encode_png(digits(1)[0][..., 0]), "headers": {"content-type": "image/png"}}


@pytest.fixture(scope="module")
def predictor():
    return tiny_predictor()


@pytest.fixture(scope="module")
def locked(predictor):
    with TestClient(create_app(predictor, ServerSettings(model_name="digits", api_key=KEY))) as client:
        yield client


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key-0123456789abcdef", f"Basic {KEY}", KEY,
                                           f"Bearer {KEY}x", "Bearer"])
def test_without_the_right_key_every_route_but_the_probes_is_401(locked, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    v1 = locked.post("/v1/predict", content=PNG["content"], headers={**PNG["headers"], **headers})
    check_route(v1, 401, "Authorization: Bearer <key>")
    assert v1.headers["www-authenticate"].startswith("Bearer")
    v2 = locked.get("/v2/models/digits", headers=headers)
    assert v2.status_code == 401 and set(v2.json()) == {"error"}  # the protocol's error body on /v2
    for path in ("/v1/models", "/metrics", "/v2"):
        assert locked.get(path, headers=headers).status_code == 401
    assert KEY not in v1.text and KEY not in v2.text


def test_the_right_key_is_let_in_and_the_probes_need_none(locked):
    good = {"authorization": f"Bearer {KEY}"}
    assert locked.post("/v1/predict", content=PNG["content"], headers={**PNG["headers"], **good}).status_code == 200
    assert locked.get("/v2/models/digits", headers=good).status_code == 200
    assert locked.get("/v2/models/digits", headers={"authorization": f"bearer {KEY}"}).status_code == 200
    for probe in ("/livez", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert locked.get(probe).status_code == 200, probe


def test_cors_headers_only_when_an_origin_is_given(predictor):
    origin = "https://app.example.com"
    with TestClient(create_app(predictor, ServerSettings())) as closed:
        answer = closed.post("/v1/predict", **{**PNG, "headers": {**PNG["headers"], "origin": origin}})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
        assert closed.options("/v1/predict", headers={"origin": origin,
                                                      "access-control-request-method": "POST"}).status_code == 405
    with TestClient(create_app(predictor, ServerSettings(cors_origins=(origin,), api_key=KEY))) as open_to:
        preflight = open_to.options("/v1/predict", headers={"origin": origin, "access-control-request-method": "POST",
                                                            "access-control-request-headers": "authorization"})
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == origin
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        answer = open_to.post("/v1/predict", content=PNG["content"],
                              headers={**PNG["headers"], "origin": origin, "authorization": f"Bearer {KEY}"})
        assert answer.headers["access-control-allow-origin"] == origin
        assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
        other = open_to.options("/v1/predict", headers={"origin": "https://evil.example",
                                                        "access-control-request-method": "POST"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def test_every_answer_has_a_request_id_and_one_access_log_line(predictor, caplog):
    with TestClient(create_app(predictor, ServerSettings())) as client, caplog.at_level(logging.INFO, "cnnkit.access"):
        mine = client.get("/livez", headers={"x-request-id": "trace-42"})
        fresh = client.post("/v1/predict", content=b"junk", headers={"content-type": "image/png"})
        odd = client.get("/livez", headers={"x-request-id": "bad id\twith spaces"})
    assert mine.headers["x-request-id"] == "trace-42"
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", fresh.headers["x-request-id"]) and fresh.status_code == 422
    assert fresh.headers["x-request-id"] != odd.headers["x-request-id"]
    assert odd.headers["x-request-id"] != "bad id\twith spaces"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cnnkit.access"]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/livez", 200), ("POST", "/v1/predict", 422), ("GET", "/livez", 200)]
    assert lines[0]["request_id"] == "trace-42" and lines[1]["request_id"] == fresh.headers["x-request-id"]
    assert all(line["ms"] >= 0 and line["bytes"] > 0 for line in lines)


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"api_key": "short"}, "at least 16"),
    ({"api_key": "has a space in it 0123456789"}, "without spaces"),
    ({"cors_origins": ("app.example.com",)}, "scheme and host"),
])
def test_bad_access_settings_are_clear_errors(settings, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ServerSettings(**settings)
    assert KEY not in repr(ServerSettings(api_key=KEY))  # settings are printed and logged: never the key


def test_the_key_comes_from_the_environment_or_the_option(monkeypatch):
    import argparse

    from cnnkit.server.cli import add_serve_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    monkeypatch.setenv("CNNKIT_API_KEY", KEY)
    assert settings_from_args(parser.parse_args(["runs/x"])).api_key == KEY
    monkeypatch.delenv("CNNKIT_API_KEY")
    assert settings_from_args(parser.parse_args(["runs/x"])).api_key is None
    flagged = settings_from_args(parser.parse_args(["runs/x", "--api-key", KEY, "--cors-origin", "http://a.b"]))
    assert flagged.api_key == KEY and flagged.cors_origins == ("http://a.b",)
