"""Load test `cnnkit serve` against a naive one-request-one-`model.predict` server, in one run.

Run from the repository root (loopback only; bounded by --seconds and --max-requests per phase):

    .venv/bin/python benchmarks/serve_load.py                           # fresh `fast` model, 1 and 32 clients, 30 s
    .venv/bin/python benchmarks/serve_load.py --model runs/demo --clients 1,8,32 --seconds 10

Each server runs as its own process on 127.0.0.1 (a free port), is waited for on /readyz (cnnkit)
or /livez (naive), warmed up with 50 uncounted requests, then measured at each client count and
stopped with SIGTERM. A client is one keep-alive connection sending random 28x28 MNIST PNGs
(raw `image/png` bodies) back to back. Without --model an untrained `fast` model is built and saved
to a temporary folder (the weights do not change the timing). Results (requests, errors, req/s,
p50/p90/p99/max latency, cnnkit/naive throughput ratio, machine, date, versions) go to
benchmarks/out/serve_load.json and a Markdown table is printed for benchmarks/RESULTS.md. Exits 1 if
cnnkit answered anything but 200.

The clients run in this process on the same cores as the server: on a small machine they take a
real share of the CPU, so the figures are a lower bound on what the server alone could do.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import OUT, ROOT, given_path, save  # benchmarks/common.py (sys.path[0] is this script's folder)
from peers.servers import HOST, free_port  # benchmarks/peers/servers.py

FIXTURE = ROOT / "tests" / "fixtures" / "mnist_subset.npz"
WARMUP_REQUESTS = 50
REQUEST_TIMEOUT_S = 30.0  # one stuck request counts as an error instead of hanging the run
START_TIMEOUT_S = 180.0  # importing TensorFlow and loading the model is slow on 2 busy cores
BUILD_MODEL = """
import sys
from cnnkit.artifact import ModelMetadata, save_model
from cnnkit.models import build_model
save_model(build_model("fast"), sys.argv[1], ModelMetadata(class_names=[str(i) for i in range(10)],
           input_shape=[28, 28, 1], color_mode="grayscale", recipe="fast"))
"""

# -- machine and versions ---------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Package versions without importing them (this process stays free of TensorFlow)."""
    found = {"python": platform.python_version(), "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow")}
    for name, dists in {"keras": ["keras"], "tensorflow": ["tensorflow", "tensorflow-cpu"],
                        "starlette": ["starlette"], "uvicorn": ["uvicorn"]}.items():
        for dist in dists:
            try:
                found[name] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


# -- servers ------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    path: str  # where predictions are POSTed
    ready: str  # answers 200 once the model is loaded
    cmd: list[str]
    port: int
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        with self.log.open("wb") as log:  # a file, not a pipe: a full pipe would stall the server
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    sock.sendall(f"GET {self.ready} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} server not ready after {START_TIMEOUT_S:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)  # cnnkit drains in-flight requests for up to 30 s
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def make_servers(model: str, workdir: Path, max_wait_ms: float | None) -> list[Server]:
    cnnkit_port, naive_port = free_port(), free_port()
    cnnkit_cmd = [sys.executable, "-m", "cnnkit.cli", "serve", model, "--host", HOST, "--port", str(cnnkit_port),
                  "--log-level", "warning"]
    if max_wait_ms is not None:
        cnnkit_cmd += ["--max-wait-ms", str(max_wait_ms)]
    naive_cmd = [sys.executable, str(ROOT / "benchmarks" / "naive_server.py"), model, "--port", str(naive_port)]
    return [Server("cnnkit", "/v1/predict", "/readyz", cnnkit_cmd, cnnkit_port, workdir / "cnnkit.log"),
            Server("naive", "/predict", "/livez", naive_cmd, naive_port, workdir / "naive.log")]


# -- load generator -----------------------------------------------------------------------------


def sample_pngs(n: int = 64) -> list[bytes]:
    """``n`` different real 28x28 digits (the fixture's test split) as PNG bytes."""
    from cnnkit.images import encode_png  # Pillow + NumPy only; no Keras

    digits = np.load(FIXTURE)["x_test"][:n]
    return [encode_png(d) for d in digits]


@dataclass
class Phase:
    """What the clients of one measurement saw."""

    latencies: list[float] = field(default_factory=list)  # seconds, 200 answers only
    errors: dict[str, int] = field(default_factory=dict)  # "status 503", "ConnectionResetError", ...
    sent: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bool]:
    """Send one request and read its whole answer; return (status, keep the connection)."""
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = dict(line.lower().split(":", 1) for line in head[1:] if ":" in line)
    if "content-length" not in headers:
        raise ValueError("response without Content-Length")  # both servers send it; anything else is a fault
    await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection", "").strip() != "close"


async def client(server: Server, requests: list[bytes], phase: Phase, deadline: float, limit: int, seed: int) -> None:
    """One keep-alive connection sending requests back to back until the deadline or the shared limit."""
    rng = np.random.default_rng(seed)
    reader = writer = None
    while time.perf_counter() < deadline and phase.sent < limit:
        phase.sent += 1  # claimed before awaiting: the clients share one event loop, so no lock is needed
        request = requests[rng.integers(len(requests))]
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, server.port)
            status, keep = await asyncio.wait_for(_exchange(reader, writer, request), REQUEST_TIMEOUT_S)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                IndexError) as exc:
            phase.error(type(exc).__name__)
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)  # a dead server must not become a busy loop
            continue
        if status == 200:
            phase.latencies.append(time.perf_counter() - start)
        else:
            phase.error(f"status {status}")
        if not keep:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run_phase(server: Server, pngs: list[bytes], clients: int, seconds: float, limit: int) -> dict:
    requests = [(f"POST {server.path} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\nContent-Type: image/png\r\n"
                 f"Content-Length: {len(png)}\r\n\r\n").encode() + png for png in pngs]
    phase = Phase()
    start = time.perf_counter()
    await asyncio.gather(*(client(server, requests, phase, start + seconds, limit, seed)
                           for seed in range(clients)))
    wall = time.perf_counter() - start
    ms = np.array(phase.latencies) * 1000 if phase.latencies else np.array([np.nan])
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"server": server.name, "clients": clients, "requests": phase.sent, "ok": len(phase.latencies),
            "errors": sum(phase.errors.values()), "error_kinds": phase.errors, "seconds": round(wall, 2),
            "requests_per_s": round(len(phase.latencies) / wall, 1), "p50_ms": round(float(p50), 2),
            "p90_ms": round(float(p90), 2), "p99_ms": round(float(p99), 2), "max_ms": round(float(np.max(ms)), 2)}


def measure(server: Server, pngs: list[bytes], client_counts: list[int], seconds: float, limit: int) -> list[dict]:
    rows = []
    try:
        print(f"starting {server.name}: {' '.join(server.cmd)}", flush=True)
        server.start()
        warm = asyncio.run(run_phase(server, pngs, min(4, max(client_counts)), START_TIMEOUT_S, WARMUP_REQUESTS))
        if warm["errors"]:
            print(f"  warm-up errors (not counted): {warm['error_kinds']}", flush=True)
        for clients in client_counts:
            row = asyncio.run(run_phase(server, pngs, clients, seconds, limit))
            print(f"  {clients:>3} clients: {row['requests_per_s']:>8.1f} req/s, p50 {row['p50_ms']} ms, "
                  f"p99 {row['p99_ms']} ms, errors {row['errors']} {row['error_kinds'] or ''}", flush=True)
            rows.append(row)
    finally:
        server.stop()
    return rows


# -- report -------------------------------------------------------------------------------------


def table(rows: list[dict], ratios: dict[str, float | None]) -> str:
    lines = ["| server | clients | requests | errors | requests/s | p50 | p90 | p99 | max | cnnkit / naive |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = ratios.get(str(r["clients"])) if r["server"] == "cnnkit" else None
        lines.append(f"| {r['server']} | {r['clients']} | {r['requests']:,} | {r['errors']} | "
                     f"{r['requests_per_s']:,.1f} | {r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms | "
                     f"{r['p99_ms']:.2f} ms | {r['max_ms']:.1f} ms | {f'{ratio:.1f}x' if ratio else ''} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=given_path,
                        help="run folder or .keras file (default: a fresh untrained `fast` model)")
    parser.add_argument("--clients", default="1,32", help="comma-separated client counts (default 1,32)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each measurement (default 30)")
    parser.add_argument("--max-requests", type=int, default=200_000,
                        help="most requests per measurement, whichever of this and --seconds comes first")
    parser.add_argument("--max-wait-ms", type=float, help="passed to `cnnkit serve` (default: its own default)")
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]
    if any(c < 1 for c in client_counts) or args.seconds <= 0 or args.max_requests < 1:
        parser.error(f"Expected positive --clients, --seconds and --max-requests. Received: --clients {args.clients} "
                     f"--seconds {args.seconds} --max-requests {args.max_requests}.")

    pngs = sample_pngs()
    with tempfile.TemporaryDirectory(prefix="cnnkit-serve-load-") as tmp:
        workdir = Path(tmp)
        model = str(args.model or workdir / "fast.keras")
        if args.model is None:
            print(f"building an untrained `fast` model in {model}", flush=True)
            subprocess.run([sys.executable, "-c", BUILD_MODEL, model], check=True, cwd=ROOT,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        rows = []
        for server in make_servers(model, workdir, args.max_wait_ms):
            rows += measure(server, pngs, client_counts, args.seconds, args.max_requests)

    by = {(r["server"], r["clients"]): r for r in rows}
    ratios = {str(c): (round(by["cnnkit", c]["requests_per_s"] / by["naive", c]["requests_per_s"], 2)
                       if by["naive", c]["requests_per_s"] else None) for c in client_counts}
    v = versions()
    save("serve_load", versions=v,
         settings={"model": str(args.model or "untrained fast (built by the script)"), "clients": client_counts,
                   "seconds": args.seconds, "max_requests": args.max_requests, "max_wait_ms": args.max_wait_ms,
                   "warmup_requests": WARMUP_REQUESTS},
         rows=rows, throughput_ratio_cnnkit_over_naive=ratios)
    print(f"Python {v['python']}, Keras {v.get('keras')} ({v['keras_backend']}), TensorFlow {v.get('tensorflow')}")
    print(f"{args.seconds:g} s per measurement; latency of 200 answers only; the load generator shares the "
          f"{os.cpu_count()} cores with the server under test.\n")
    print(table(rows, ratios))
    cnnkit_errors = sum(r["errors"] for r in rows if r["server"] == "cnnkit")
    if cnnkit_errors:
        print(f"\ncnnkit answered {cnnkit_errors} request(s) with an error: see error_kinds in "
              f"{OUT / 'serve_load.json'}", file=sys.stderr)
    return 1 if cnnkit_errors else 0


if __name__ == "__main__":
    sys.exit(main())
