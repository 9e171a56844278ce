"""The served model's forward pass through each engine, at batch 1 and 32, in one run.

For each run folder: Keras' compiled function (the ``keras`` engine the server uses), and the
model's ONNX export run by ONNX Runtime and its LiteRT export run by the LiteRT interpreter, both
made by ``cnnkit export``. Each engine is called ``--calls`` times per batch size on the same random
uint8 pixels, after a warm-up; reported: the median and 90th-percentile milliseconds per call,
images/s, and the largest difference of its probabilities from Keras' (they must agree within 1e-4).

    .venv/bin/python benchmarks/engines.py runs/demo benchmarks/out/weather-photo-seed0 --calls 200

Results go to benchmarks/out/engines.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common import given_path, save  # benchmarks/common.py


def timed(call: Callable[[np.ndarray], np.ndarray], x: np.ndarray, calls: int) -> dict[str, float]:
    """Median and p90 milliseconds of ``calls`` calls on ``x`` (after five untimed ones)."""
    for _ in range(5):
        call(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - start)
    median, p90 = np.percentile(times, [50, 90]) * 1000
    return {"median_ms": round(float(median), 3), "p90_ms": round(float(p90), 3),
            "images_per_second": round(len(x) / (median / 1000), 1)}


def engines(run: Path, folder: Path, threads: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each engine's call: Keras' compiled function, and the ONNX and LiteRT exports."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    import cnnkit
    from cnnkit.exporting import export_model

    keras_engine = cnnkit.load(run, tta=False).engine
    onnx_path = export_model(run, folder, "onnx")[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    litert_path = export_model(run, folder, "litert")[0]
    interpreter = Interpreter(model_path=str(litert_path), num_threads=threads)
    runner = interpreter.get_signature_runner()
    litert_input = next(iter(runner.get_input_details()))

    def litert(x: np.ndarray) -> np.ndarray:
        return next(iter(runner(**{litert_input: x}).values()))

    return {"keras": keras_engine, "onnxruntime": lambda x: session.run(None, {name: x})[0], "litert": litert}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=given_path)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    for run in args.runs:
        with tempfile.TemporaryDirectory() as folder:
            calls = engines(run, Path(folder), threads)
            shape = tuple(calls["keras"].input_shape)
            for batch in args.batches:
                x = np.random.default_rng(batch).integers(0, 256, (batch, *shape), dtype=np.uint8)
                reference = calls["keras"](x)
                for engine, call in calls.items():
                    row = {"run": str(run), "input": "x".join(map(str, shape)), "batch": batch, "engine": engine,
                           **timed(call, x, args.calls),
                           "max_abs_diff_vs_keras": float(np.abs(np.asarray(call(x)) - reference).max())}
                    print(row, flush=True)
                    rows.append(row)
    print("\n| model input | batch | engine | median ms | p90 ms | images/s | max diff vs Keras |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['input']} | {r['batch']} | {r['engine']} | {r['median_ms']} | {r['p90_ms']} | "
              f"{r['images_per_second']:,} | {r['max_abs_diff_vs_keras']:.1e} |")
    save("engines", threads=threads, calls=args.calls, rows=rows)


if __name__ == "__main__":
    main()
