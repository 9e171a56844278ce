"""`cnnkit.serve(run)`: the command's server in a background thread, for a notebook (issue 30)."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

import httpx

import cnnkit
from cnnkit.errors import ConfigError
from cnnkit.images import encode_png


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_returns_at_once_answers_on_a_real_port_and_stops(trained_run, mnist_subset):
    port = _free_port()
    image, label = mnist_subset.x_test[0], mnist_subset.class_names[mnist_subset.y_test[0]]
    with cnnkit.serve(trained_run, port=port, engine="keras") as server:
        assert server.running and server.url == f"http://127.0.0.1:{port}"
        assert repr(server).startswith(f"Serving 'fast' at http://127.0.0.1:{port} (POST /v1/predict")
        assert f'href="http://127.0.0.1:{port}/"' in server._repr_html_()
        answer = httpx.post(f"{server.url}/v1/predict", content=encode_png(image),
                            headers={"Content-Type": "image/png"}, timeout=30)
        assert answer.status_code == 200, answer.text
        expected = trained_run.predictor().predict(image)[0].label
        assert answer.json()["predictions"][0]["label"] == expected and isinstance(label, str)
        with pytest.raises(ConfigError, match=f"Cannot listen on 127.0.0.1:{port}") as taken:
            cnnkit.serve(trained_run, port=port)
        assert "Pick another port" in str(taken.value)
    assert not server.running and "(stopped)" in repr(server)
    with socket.socket() as probe:  # the port is free again
        probe.bind(("127.0.0.1", port))


def test_serve_names_an_unknown_setting(trained_run):
    with pytest.raises(ConfigError, match=r"Unknown server setting 'max_batch'"):
        cnnkit.serve(trained_run, port=_free_port(), max_batch=8)
