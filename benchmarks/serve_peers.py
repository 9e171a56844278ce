"""`cnnkit serve` against LitServe, MLServer and a no-model ceiling: one model, one image, wrk, in one run.

    .venv/bin/python benchmarks/serve_peers.py RUN_OR_MODEL IMAGE [--duration 20] [--connections 1 32]
                                               [--only cnnkit litserve mlserver ceiling] [--warmup 2]

Set up first with `benchmarks/peers/setup.sh` (wrk, LitServe in .venv, MLServer in benchmarks/.venv-mlserver).
The servers run one after another, each alone, on 127.0.0.1 and its own free port, on its documented
default path: `cnnkit serve` (POST /v1/predict, raw image/png body), LitServe (POST /predict, multipart
upload), MLServer (POST /v2/models/classifier/infer, V2 JSON with the image as a base64 BYTES input) and
the ceiling (cnnkit's Starlette + uvicorn answering a constant, benchmarks/peers/ceiling_app.py). The
peers run the same .keras file through Keras + TensorFlow and decode the same PNG with Pillow
(benchmarks/peers/peer_model.py). Each server is started, waited for, asked once from Python (its label
must be the one `cnnkit predict RUN_OR_MODEL IMAGE` gives), warmed up with an uncounted wrk run, then
measured with `wrk -t1 -c{N} -d{D}s --latency` per connection count, and stopped. A Lua hook
(benchmarks/peers/post.lua) checks every answer's status and label; an answer slower than wrk's default
2 s timeout is a socket error, not a latency. Results go to benchmarks/out/serve_peers.json and a Markdown
table is printed. wrk shares the machine's cores with the server under test. Exits 1 if cnnkit gave
a wrong answer or a socket error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import given_path, save  # benchmarks/common.py (sys.path[0] is this script's folder)
from peers.servers import MLSERVER_VENV, NAMES, PEERS, Server, lua_pattern, make_servers

LABEL = """
import json, sys, cnnkit
predictor = cnnkit.load(sys.argv[1])
print(json.dumps({"label": predictor.predict_files([sys.argv[2]])[0].label, "tta": predictor.tta}))
"""
VERSIONS = """
import importlib.metadata as m, json
print(json.dumps({d: m.version(d) for d in ["mlserver", "keras", "tensorflow-cpu", "fastapi", "starlette",
                                            "uvicorn", "uvloop", "protobuf", "pillow", "numpy"]}))
"""
CEILING_SHARE = "cnnkit_over_ceiling_requests_per_s"
UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}


def keras_file(model: Path) -> Path:
    """The .keras file of a run folder or .keras path (what the peers load)."""
    path = model / "model.keras" if model.is_dir() else model
    if path.suffix != ".keras" or not path.is_file():
        raise SystemExit(f"Expected a run folder with model.keras, or a .keras file. Received: {str(model)!r}.")
    return path


def expected_label(model: Path, image: Path) -> tuple[str, dict[str, Any]]:
    """The label `cnnkit predict` gives for ``image``, and the model's test-time augmentation (in a subprocess:
    this process stays free of TensorFlow)."""
    out = subprocess.run([sys.executable, "-c", LABEL, str(model), str(image)], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if out.returncode != 0:
        raise SystemExit(f"cnnkit could not predict {image} with {model}:\n{out.stderr[-2000:]}")
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    return answer["label"], answer["tta"]


def versions() -> dict[str, Any]:
    """Package versions of both environments, and wrk's."""
    found: dict[str, Any] = {"python": sys.version.split()[0]}
    for dist in ("keras", "tensorflow-cpu", "starlette", "uvicorn", "litserve", "fastapi"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    if (MLSERVER_VENV / "bin" / "python").exists():
        out = subprocess.run([str(MLSERVER_VENV / "bin" / "python"), "-c", VERSIONS], capture_output=True, text=True)
        found["mlserver_venv"] = json.loads(out.stdout) if out.returncode == 0 else out.stderr[-300:]
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    found["wrk"] = (wrk.stdout or wrk.stderr).splitlines()[0]
    return found


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/s, p50/p99 (ms), request count, non-2xx/3xx, socket errors and wrong answers from wrk's output."""
    def maybe(pattern: str) -> tuple[str, ...] | None:
        found = re.search(pattern, text, re.M)
        return found.groups() if found else None

    def need(pattern: str) -> tuple[str, ...]:
        found = maybe(pattern)
        if found is None:
            raise ValueError(f"wrk output without {pattern!r}:\n{text}")
        return found

    def percentile_ms(p: int) -> float:
        value, unit = need(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m|h)\s*$")
        return round(float(value) * UNITS_MS[unit], 3)

    sockets = maybe(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)") or ("0",) * 4
    socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, sockets)))
    checked, wrong = need(r"^answers checked (\d+) wrong (\d+)$")
    return {"requests_per_s": float(need(r"Requests/sec:\s+([\d.]+)")[0]), "p50_ms": percentile_ms(50),
            "p99_ms": percentile_ms(99), "requests": int(need(r"(\d+) requests in")[0]),
            "non_2xx_3xx": int((maybe(r"Non-2xx or 3xx responses: (\d+)") or ("0",))[0]),
            "socket_errors": sum(socket_errors.values()), "socket_error_kinds": socket_errors,
            "answers_checked": int(checked), "wrong": int(wrong)}


def run_wrk(server: Server, connections: int, seconds: float, body_file: Path, label: str) -> dict[str, Any]:
    """One wrk run against ``server``; its parsed figures."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(PEERS / "post.lua"),
           server.url, "--", str(body_file), server.content_type, label, lua_pattern(server.label_regex)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}{out.stdout}")
    return parse_wrk(out.stdout)


def measure(server: Server, connections: list[int], seconds: float, warmup: float, label: str) -> list[dict[str, Any]]:
    """Start, check, warm up, measure at each connection count, stop (always)."""
    body_file = server.workdir / f"{server.name}.body"
    body_file.write_bytes(server.body)
    rows = []
    try:
        print(f"{server.name}: starting ({server.description})", flush=True)
        server.start()
        server.check(label)
        print(f"  ready after {server.ready_s} s; answers {label!r} as cnnkit predict does", flush=True)
        if warmup > 0:
            run_wrk(server, max(connections), warmup, body_file, label)
        for n in connections:
            row = {"server": server.name, "connections": n, **run_wrk(server, n, seconds, body_file, label)}
            print(f"  {n:>3} connections: {row['requests_per_s']:>9,.1f} req/s, p50 {row['p50_ms']} ms, "
                  f"p99 {row['p99_ms']} ms, non-2xx {row['non_2xx_3xx']}, socket errors {row['socket_errors']}, "
                  f"wrong {row['wrong']}", flush=True)
            rows.append(row)
    finally:
        server.stop()
    return rows


def summarise(rows: list[dict[str, Any]], connections: list[int]) -> dict[str, Any]:
    """cnnkit against the ceiling (each connection count) and the best peer (most and fewest connections)."""
    by = {(r["server"], r["connections"]): r for r in rows}
    low, high = min(connections), max(connections)

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    if not any(server == "cnnkit" for server, _ in by):
        return {}
    cnnkit = {n: by["cnnkit", n] for n in connections}
    summary: dict[str, Any] = {CEILING_SHARE: {
        str(n): ratio(cnnkit[n]["requests_per_s"], by["ceiling", n]["requests_per_s"])
        for n in connections if ("ceiling", n) in by}}
    peers = [server for server in ("litserve", "mlserver") if (server, high) in by]
    if peers:
        best = max(peers, key=lambda server: by[server, high]["requests_per_s"])
        summary[f"cnnkit_over_best_peer_requests_per_s_at_{high}"] = {
            "best_peer": best, "ratio": ratio(cnnkit[high]["requests_per_s"], by[best, high]["requests_per_s"])}
        fastest = min(peers, key=lambda server: by[server, low]["p50_ms"])
        summary[f"p50_ms_at_{low}"] = {
            "cnnkit": cnnkit[low]["p50_ms"], "best_peer": fastest, "best_peer_p50_ms": by[fastest, low]["p50_ms"],
            "cnnkit_over_best_peer": ratio(cnnkit[low]["p50_ms"], by[fastest, low]["p50_ms"])}
    summary[f"cnnkit_p99_over_p50_at_{high}"] = ratio(cnnkit[high]["p99_ms"], cnnkit[high]["p50_ms"])
    return summary


def ms(value: float) -> str:
    """Milliseconds to show: three decimals below 1 ms, two above."""
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms"


def table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The rows as a Markdown table, then the rest of the summary as a list."""
    ceiling = summary.get(CEILING_SHARE, {})
    lines = ["| server | connections | requests/s | p50 | p99 | requests | non-2xx/3xx | socket errors "
             "| wrong answers | cnnkit / ceiling |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        share = ceiling.get(str(r["connections"])) if r["server"] == "cnnkit" else None
        lines.append(f"| {r['server']} | {r['connections']} | {r['requests_per_s']:,.1f} | {ms(r['p50_ms'])} | "
                     f"{ms(r['p99_ms'])} | {r['requests']:,} | {r['non_2xx_3xx']} | {r['socket_errors']} | "
                     f"{r['wrong']} | {f'{share:.0%}' if share is not None else ''} |")
    lines.append("")
    lines += [f"- {key}: {json.dumps(value)}" for key, value in summary.items() if key != CEILING_SHARE]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Both made absolute against the folder this was started from: each server runs in a temporary folder.
    parser.add_argument("model", metavar="RUN_OR_MODEL", type=given_path, help="run folder or .keras file")
    parser.add_argument("image", type=given_path, help="the image file every request sends")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per wrk run (default 20)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32], help="wrk connections (default 1 32)")
    parser.add_argument("--only", nargs="+", choices=NAMES, default=list(NAMES), help="servers to run (default all)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of uncounted wrk load before measuring each server (default 2; 0: none)")
    args = parser.parse_args()
    if args.duration <= 0 or args.warmup < 0 or min(args.connections) < 1 or not args.image.is_file():
        parser.error(f"Expected an image file, --duration > 0, --warmup >= 0 and connections >= 1. Received: "
                     f"{args.image}, --duration {args.duration}, --warmup {args.warmup}, "
                     f"--connections {args.connections}.")
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if shutil.which("wrk") is None or ("mlserver" in args.only and not mlserver.exists()):
        raise SystemExit(f"wrk or {mlserver} is missing: run benchmarks/peers/setup.sh first.")

    model_file = keras_file(args.model)
    label, tta = expected_label(args.model, args.image)
    print(f"cnnkit predict: {args.image} is {label!r}" + (f"; the model averages TTA views {tta}: cnnkit serve runs "
                                                        "with --no-tta, as the peers make one call" if tta else ""))
    png = args.image.read_bytes()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally clauses that stop the servers
    rows: list[dict[str, Any]] = []
    servers: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cnnkit-serve-peers-") as tmp:
        for server in make_servers(args.only, args.model, model_file, png, label, bool(tta), Path(tmp)):
            rows += measure(server, args.connections, args.duration, args.warmup, label)
            servers[server.name] = {"setup": server.description, "ready_s": server.ready_s,
                                    "request": f"POST {server.path}, {server.content_type}"}

    summary = summarise(rows, args.connections)
    save("serve_peers", versions=versions(), servers=servers,
         settings={"model": str(args.model), "image": str(args.image), "label": label, "duration_s": args.duration,
                   "connections": args.connections, "warmup_s": args.warmup, "wrk": "wrk -t1 -c{N} -d{D}s --latency"},
         rows=rows, summary=summary)
    print(table(rows, summary))
    cnnkit_faults = sum(r["wrong"] + r["socket_errors"] for r in rows if r["server"] == "cnnkit")
    return 1 if cnnkit_faults else 0


if __name__ == "__main__":
    sys.exit(main())
