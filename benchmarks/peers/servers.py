"""The four servers ``serve_peers.py`` measures, and how each is started, checked and stopped.

Each server is a subprocess in its own session (process group) on 127.0.0.1 and a free port: started,
waited for on its readiness path, asked once from Python, then stopped with SIGTERM to the whole group
and SIGKILL for anything left, so no worker process outlives a run, failed or not.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"  # loopback only: the benchmarks never listen on or connect to anything else
ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "benchmarks" / "peers"
MLSERVER_VENV = ROOT / "benchmarks" / ".venv-mlserver"
NAMES = ("cnnkit", "litserve", "mlserver", "ceiling")
START_TIMEOUT_S = 300.0  # several processes importing TensorFlow on 2 cores
STOP_TIMEOUT_S = 40.0  # cnnkit drains in-flight requests for up to 30 s
MODEL_NAME = "classifier"  # MLServer's model name: POST /v2/models/classifier/infer
BOUNDARY = "cnnkit-serve-peers-boundary"
# Where each answer names its label, as a regex (Python's check) and a Lua pattern (wrk's): the first
# "label": "..." field, or for the V2 protocol the first output's first data item (the label output).
LABEL_FIELD = r'"label"\s*:\s*"([^"]*)"'
V2_FIRST_DATA = r'"data"\s*:\s*\[\s*"([^"]*)"'


def lua_pattern(regex: str) -> str:
    """The Lua pattern for one of the regexes above (they use only ``\\s`` and ``\\[`` escapes)."""
    return regex.replace("\\s", "%s").replace("\\[", "%[")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """One server under test: how to start it, and the request every load-test connection sends."""

    name: str
    description: str
    cmd: list[str]
    path: str  # POST here
    ready: str  # GET answers 200 once the model is loaded
    content_type: str
    body: bytes
    label_regex: str
    port: int
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    ready_s: float | None = None  # how long start() waited for readiness

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        """Start the server and wait until it is ready (``ready_s``: how long that took)."""
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **self.env}
        begin = time.monotonic()
        with self.log.open("wb") as log:  # a file, not a pipe: a full pipe would stall the server
            self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        while time.monotonic() - begin < START_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while starting:\n{self.tail()}")
            try:
                if self.request("GET", self.ready)[0] == 200:
                    self.ready_s = round(time.monotonic() - begin, 1)
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT_S:.0f} s:\n{self.tail()}")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """One HTTP request to the server; (status, body)."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            connection.request(method, path, body, {"Content-Type": self.content_type} if body else {})
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()

    def check(self, expected: str) -> None:
        """One prediction from Python: it must answer 200 and name ``expected`` where wrk will look."""
        status, body = self.request("POST", self.path, self.body)
        found = re.search(self.label_regex, body.decode(errors="replace"))
        if status != 200 or found is None or found.group(1) != expected:
            raise RuntimeError(f"{self.name} answered {status} {body[:300]!r}; expected label {expected!r} "
                               f"(regex {self.label_regex}).\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM the server's process group, wait for the server, then SIGKILL whatever is left of the group."""
        if self.proc is None:
            return
        group = self.proc.pid  # start_new_session: the server's pid is its process group's id
        signal_group(group, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.5)  # workers notice their parent left
        signal_group(group, signal.SIGKILL)  # workers left behind, or a server that would not stop
        self.proc.wait()
        self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def signal_group(group: int, sig: signal.Signals) -> None:
    """Send ``sig`` to every process of ``group``, if any is left."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def multipart(png: bytes) -> bytes:
    """``png`` as a multipart/form-data body with one file field ``file``."""
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="digit.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    return head + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def v2_request(png: bytes) -> bytes:
    """``png`` as a V2 (Open Inference Protocol) JSON request: one BYTES input, base64 content type."""
    return json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                   "parameters": {"content_type": "base64"},
                                   "data": [base64.b64encode(png).decode()]}]}).encode()


def mlserver_folder(workdir: Path, keras_file: Path, workers: int) -> tuple[Path, int]:
    """Write MLServer's settings.json and model-settings.json; return the folder and the HTTP port."""
    folder, http_port = workdir / "mlserver", free_port()
    (folder / MODEL_NAME).mkdir(parents=True, exist_ok=True)
    settings = {"host": HOST, "http_port": http_port, "grpc_port": free_port(), "metrics_port": free_port(),
                "parallel_workers": workers, "metrics_dir": str(folder / "metrics"), "debug": False}
    model = {"name": MODEL_NAME, "implementation": "mlserver_runtime.KerasImageRuntime",
             "parameters": {"uri": str(keras_file)}}
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (folder / MODEL_NAME / "model-settings.json").write_text(json.dumps(model, indent=2))
    return folder, http_port


def make_servers(names: list[str], model: Path, keras_file: Path, png: bytes, label: str, no_tta: bool,
                 workdir: Path) -> list[Server]:
    """The servers named in ``names`` (in that order), each set up in ``workdir``.

    Each server runs with ``workdir`` as its working folder, so every path it is handed is absolute
    (a relative one is taken against this process's working folder, as its caller meant it).
    """
    model, keras_file = Path(model).absolute(), Path(keras_file).absolute()
    cores = os.cpu_count() or 1
    python = sys.executable
    servers: list[Server] = []
    for name in names:
        port = free_port()
        if name == "cnnkit":
            cmd = [python, "-m", "cnnkit.cli", "serve", str(model), "--host", HOST, "--port", str(port),
                   "--log-level", "warning", *(["--no-tta"] if no_tta else [])]
            servers.append(Server(name, "cnnkit serve, default settings" + (", --no-tta" if no_tta else ""),
                                  cmd, "/v1/predict", "/readyz", "image/png", png, LABEL_FIELD, port, workdir))
        elif name == "litserve":
            cmd = [python, str(PEERS / "litserve_app.py"), str(keras_file), "--port", str(port),
                   "--workers", str(cores)]
            servers.append(Server(name, f"LitServe LitAPI, accelerator=cpu, workers_per_device={cores}, "
                                        "fast_queue=True, multipart upload", cmd, "/predict", "/health",
                                  f"multipart/form-data; boundary={BOUNDARY}", multipart(png), LABEL_FIELD,
                                  port, workdir))
        elif name == "mlserver":
            folder, port = mlserver_folder(workdir, keras_file, cores)
            cmd = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(folder)]
            servers.append(Server(name, f"MLServer custom MLModel (Keras + TensorFlow), parallel_workers={cores}, "
                                        "debug=false, V2 REST JSON with a base64 BYTES input",
                                  cmd, f"/v2/models/{MODEL_NAME}/infer", f"/v2/models/{MODEL_NAME}/ready",
                                  "application/json", v2_request(png), V2_FIRST_DATA, port, workdir,
                                  env={"PYTHONPATH": str(PEERS)}))
        elif name == "ceiling":
            cmd = [python, str(PEERS / "ceiling_app.py"), "--label", label, "--port", str(port)]
            servers.append(Server(name, "Starlette + uvicorn as cnnkit runs them, constant JSON, no decoding "
                                        "or model", cmd, "/v1/predict", "/readyz", "image/png", png,
                                  LABEL_FIELD, port, workdir))
        else:
            raise ValueError(f"Unknown server. Expected one of {NAMES}. Received: {name!r}.")
    return servers
