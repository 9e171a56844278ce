"""`cnnkit serve`: options → settings, and the real uvicorn server on a loopback port."""

from __future__ import annotations

import argparse
import socket
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from cnnkit.errors import ArtifactError, ConfigError  # noqa: E402
from cnnkit.images import encode_png  # noqa: E402
from cnnkit.server import ServerSettings, create_app  # noqa: E402
from cnnkit.server.cli import add_serve_arguments, build_server, check_port_free, serve, settings_from_args  # noqa: E402

from helpers import fake_engine, tiny_predictor, wait_ready_http  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cnnkit serve")
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def test_options_become_settings_and_the_name_comes_from_the_run(tmp_path):
    run = tmp_path / "My Run"
    run.mkdir()
    settings = settings_from_args(parse([str(run), "--port", "9001", "--max-batch-size", "8", "--max-wait-ms", "5",
                                         "--queue-size", "3", "--max-body-mb", "2"]))
    assert (settings.port, settings.max_batch_size, settings.max_wait_ms, settings.queue_size) == (9001, 8, 5.0, 3)
    assert settings.max_body_bytes == 2 * 2**20 and settings.host == "127.0.0.1"
    assert settings.model_name == "My-Run"
    assert settings_from_args(parse(["models/digits.keras"])).model_name == "digits"
    assert settings_from_args(parse(["x.keras", "--model-name", "mnist"])).model_name == "mnist"


@pytest.mark.parametrize(("options", "message"), [
    ({"max_batch_size": 0}, "max_batch_size must be positive. Received: max_batch_size=0"),
    ({"port": 70000}, "Port must be 1-65535. Received: port=70000"),
    ({"max_wait_ms": -1}, "max_wait_ms must be >= 0"),
    ({"model_name": "a/b"}, "Received: model_name='a/b'"),
])
def test_bad_settings_say_what_and_how(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ServerSettings(**options)


def test_missing_model_is_a_cnnkit_error(tmp_path):
    with socket.socket() as probe:  # a port that is free, so the model check is what fails
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ArtifactError, match="Model not found"):
        serve(parse([str(tmp_path / "nothing"), "--port", str(port)]))


def test_taken_port_is_reported_with_a_hint():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="Cannot listen on 127.0.0.1"):
            check_port_free(ServerSettings(port=taken.getsockname()[1]))


def test_real_server_answers_over_loopback_and_drains_on_shutdown():
    predictor = tiny_predictor()
    compiled = predictor.engine
    gate, entered, hold = threading.Event(), threading.Event(), threading.Event()

    def infer(pixels: np.ndarray) -> np.ndarray:
        if hold.is_set():
            entered.set()
            gate.wait(10)
        return compiled(pixels)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # loopback only; the OS picks a free port
    port = sock.getsockname()[1]
    settings = ServerSettings(port=port, model_name="digits", graceful_timeout_s=10)
    server = build_server(create_app(predictor, settings, engine=fake_engine(infer)), settings, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            wait_ready_http(http)
            started = time.perf_counter()
            response = http.post("/v1/predict", files={"file": ("d.png", encode_png(pixels), "image/png")})
            latency = time.perf_counter() - started
            assert response.status_code == 200, response.text
            expected = predictor.predict_proba(pixels)[0]
            assert response.json()["predictions"][0]["probability"] == pytest.approx(expected.max(), abs=1e-6)
            print(f"single request over loopback: {latency * 1000:.1f} ms")

            hold.set()  # the next request is in flight when shutdown starts ...
            in_flight: list[httpx.Response] = []
            client_thread = threading.Thread(target=lambda: in_flight.append(
                http.post("/v1/predict", content=encode_png(pixels), headers={"content-type": "image/png"})))
            client_thread.start()
            assert entered.wait(10)
            server.should_exit = True  # what uvicorn's SIGTERM handler does
            time.sleep(0.2)
            gate.set()  # ... and still gets its answer
            client_thread.join(10)
            assert in_flight and in_flight[0].status_code == 200
    finally:
        gate.set()
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()


def test_the_access_log_goes_to_stderr_from_its_own_thread(capfd):
    import logging

    from cnnkit.server.cli import _access_log

    access = logging.getLogger("cnnkit.access")
    try:
        listener = _access_log(enabled=True)
        access.info('{"path": "/livez", "status": 200}')
        listener.stop()
        assert capfd.readouterr().err == '{"path": "/livez", "status": 200}\n'
        quiet = _access_log(enabled=False)  # --log-level warning
        access.info("not written")
        quiet.stop()
        assert capfd.readouterr().err == ""
    finally:  # as before: no handler of its own, lines go to the root logger (and pytest's caplog)
        access.handlers, access.propagate = [], True
        access.setLevel(logging.NOTSET)
