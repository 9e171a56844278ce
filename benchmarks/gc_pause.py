"""How long a full garbage collection stops a serving process, before and after ``gc.freeze()``.

Loads a model as ``cnnkit serve`` does (``cnnkit.load``, one prediction to trace it, the ONNX
Runtime engine built as ``--engine auto`` builds it), counts the objects the collector tracks, and
times ``gc.collect()`` (a full, generation-2 collection: what Python runs now and then under load,
every thread stopped meanwhile) three times; then freezes them, as the server does after warm-up
(:meth:`cnnkit.server.app.Service.start`), and times it again.

    .venv/bin/python benchmarks/gc_pause.py runs/demo

Results go to benchmarks/out/gc_pause.json.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from common import given_path, save  # benchmarks/common.py


def full_collections(times: int = 3) -> list[float]:
    """Milliseconds of ``times`` full collections."""
    out = []
    for _ in range(times):
        start = time.perf_counter()
        gc.collect()
        out.append(round((time.perf_counter() - start) * 1000, 2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=given_path)
    args = parser.parse_args()
    import cnnkit
    from cnnkit.engines.choice import choose_engine

    predictor = cnnkit.load(args.run)
    predictor.predict_proba(np.zeros((1, *predictor.input_shape), np.uint8))
    engine = choose_engine(predictor.model, "onnxruntime").engine
    engine(np.zeros((1, *predictor.input_shape), np.uint8))
    tracked = len(gc.get_objects())
    before = full_collections()
    gc.freeze()
    after = full_collections()
    print(f"{tracked:,} tracked objects; full collection {before} ms; after gc.freeze() {after} ms")
    save("gc_pause", run=str(args.run), tracked_objects=tracked, full_collection_ms=before, after_freeze_ms=after)


if __name__ == "__main__":
    main()
