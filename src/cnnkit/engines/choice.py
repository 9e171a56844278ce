"""``--engine auto``: the engine that runs this model fastest here, measured at start-up.

Which engine wins depends on the model and the machine (benchmarks/engines.py): so ``auto`` builds
each engine that can run the model, times it on random pixels at the batch sizes the caller will
use (the server: one image, and a full micro-batch), and keeps the one with the least total time.
An engine that cannot be built here (ONNX Runtime on the JAX backend, or without the ``export``
extra) is left out and said so. ``keras`` and ``onnxruntime`` skip the measurement.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.engines import ENGINES, Engine
from cnnkit.errors import CnnkitError, ConfigError

CHOICES = ("auto", *ENGINES)
CALLS = 15  # timed calls per batch size, after one untimed (a few hundred ms for a small CNN)


@dataclass
class Choice:
    """The engine chosen, and what was measured (median ms per call, by engine and batch size)."""

    engine: Engine
    measured: dict[str, dict[int, float]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One printed line: the engine and why."""
        if not self.measured:
            return f"Engine: {self.engine.name}."
        times = "; ".join(f"{name} " + ", ".join(f"{ms:.2f} ms at batch {b}" for b, ms in by_batch.items())
                          for name, by_batch in self.measured.items())
        skipped = "".join(f"; {name} left out ({why})" for name, why in self.left_out.items())
        return f"Engine: {self.engine.name}, the fastest measured here ({times}{skipped})."

    def describe(self) -> dict[str, Any]:
        """What ``/v1/models`` shows: the engine, and the measurement that chose it."""
        return {**self.engine.describe(), "chosen": "auto" if self.measured else "given",
                **({"measured_ms": {n: {str(b): ms for b, ms in t.items()} for n, t in self.measured.items()}}
                   if self.measured else {})}


def choose_engine(model: Any, kind: str = "auto", batch_sizes: Sequence[int] = (1, 32)) -> Choice:
    """The ``kind`` engine for ``model`` (one view; TTA wraps it later), or with ``auto`` the fastest here."""
    if kind not in CHOICES:
        raise ConfigError(f"Unknown engine. Expected one of {list(CHOICES)}. Received: engine={kind!r}.",
                          "Leave it at auto (the fastest engine measured at start-up), or name one.", params="engine")
    if kind != "auto":
        return Choice(ENGINES[kind](model))
    built, left_out = {"keras": ENGINES["keras"](model)}, {}  # the engine every model runs on
    for name, make in ENGINES.items():
        if name in built:
            continue
        try:
            built[name] = make(model)
        except CnnkitError as exc:  # not possible here (backend, extra): the others still compete
            left_out[name] = str(exc).split(". ")[0]
        except Exception as exc:  # noqa: BLE001 - a model the converter cannot take: served by another engine
            left_out[name] = f"{type(exc).__name__}: {str(exc)[:120]}"
    measured = {name: _time(engine, batch_sizes) for name, engine in built.items()}
    best = min(measured, key=lambda name: sum(measured[name].values()))
    return Choice(built[best], measured, left_out)


def _time(engine: Engine, batch_sizes: Sequence[int]) -> dict[int, float]:
    """Median milliseconds of one call, per batch size, on random pixels."""
    out = {}
    for size in batch_sizes:
        x = np.random.default_rng(size).integers(0, 256, (size, *engine.input_shape), dtype=np.uint8)
        engine(x)  # traces or initialises: not timed
        times = []
        for _ in range(CALLS):
            start = time.perf_counter()
            engine(x)
            times.append(time.perf_counter() - start)
        out[size] = round(float(np.median(times)) * 1000, 3)
    return out
