"""Batch prediction on Ray Data: the rows of :mod:`cnnkit.batch`, computed by a pool of Ray actors.

The driver lists the files (:func:`cnnkit.batch.expand_inputs`), turns them into a dataset of
``(index, file)`` rows and sends it through ``map_batches`` to actors that each load the model once
and run :func:`cnnkit.batch.predict_chunk`: the same decoder, the same batching code, a bad file
becomes its own error row. The driver puts the answers back in input order and writes the CSV with
:func:`cnnkit.batch.write_csv`, so ``--engine ray`` and the single-process path give the same file.

Without ``address`` a local Ray instance is started on loopback and shut down afterwards; with
``address`` the job runs on that cluster (model and image paths must then be readable on every node,
e.g. a shared file system).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.errors import ConfigError

if TYPE_CHECKING:  # imported where used: a Ray worker unpickling PredictActor must not load Keras noisily
    from cnnkit.batch import BatchResult, FileResult

RAY_EXTRA = "pip install 'cnnkit[ray]'"
# Set before Ray is imported, this keeps a local Ray's node address and every listener on 127.0.0.1
# (checked with `ss -ltnp`); without it Ray takes the machine's external address and binds every interface.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def require_ray() -> None:
    """Raise a ConfigError naming the extra to install when Ray Data is missing (without importing Ray)."""
    missing = [name for name in ("ray", "pyarrow") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--engine ray needs Ray Data, which is not installed (no module {missing[0]!r}). "
                          "Received: engine='ray'.", f"Install it with: {RAY_EXTRA}")


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Use the running Ray session, connect to ``address``, or start a local loopback one (shut down after)."""
    require_ray()
    if not address:
        # Ray reads this when it is first imported, and its own processes inherit it at start-up.
        os.environ[LOOPBACK_ENV] = "0"
    import ray
    import ray.data  # noqa: F401

    if ray.is_initialized():  # the caller owns it (tests, notebooks)
        yield ray
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        constants = sys.modules.get("ray._private.ray_constants")
        if getattr(constants, "ENABLE_RAY_CLUSTER", False):
            raise ConfigError(
                "Expected a local Ray instance on loopback only, but it would listen on every network interface. "
                f"Received: ray imported before {LOOPBACK_ENV}=0 was set.",
                f"Set {LOOPBACK_ENV}=0 before importing ray, start Ray yourself (ray.init), or pass --ray-address.")
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


class PredictActor:
    """A Ray Data callable class: loads the model once, then predicts batches of ``(index, file)`` rows."""

    def __init__(self, model: str, top_k: int, tta: bool = True) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from cnnkit.cli import _import_keras_quietly

        _import_keras_quietly()  # no TensorFlow start-up lines from every actor
        from cnnkit.loading import load  # the loader `cnnkit predict` uses: run folder, .keras or model.json

        self.predictor = load(model, tta=tta)
        self.top_k = top_k
        self.width = min(max(1, top_k), len(self.predictor.class_names))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cnnkit.batch import predict_chunk

        files = predict_chunk(self.predictor, [Path(str(f)) for f in batch["file"]], top_k=self.top_k)
        n, k = len(files), self.width
        labels, probs = np.full((n, k), "", dtype=object), np.full((n, k), np.nan)
        for i, f in enumerate(files):
            if f.prediction is not None:
                labels[i], probs[i] = zip(*f.prediction.top_k)
        # Float64 carries each float32 probability exactly: the driver rebuilds the same Prediction.
        return {"index": batch["index"], "top_labels": labels.astype(str), "top_probs": probs,
                "error": np.array([f.error for f in files], dtype=str)}


def _result(path: Path, labels: Sequence[str], probs: Sequence[float], error: str) -> FileResult:
    from cnnkit.batch import FileResult
    from cnnkit.predictor import Prediction

    if error:
        return FileResult(path, None, error)
    pairs = [(str(label), float(p)) for label, p in zip(labels, probs)]
    return FileResult(path, Prediction(label=pairs[0][0], probability=pairs[0][1], top_k=pairs))


def predict_paths_ray(model: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]], *,
                      out: str | Path | None = None, top_k: int = 3, batch_size: int = 256,
                      address: str | None = None, actors: int | None = None, num_cpus: int | None = None,
                      progress: bool = True, tta: bool = True) -> BatchResult:
    """Predict every image under ``inputs`` on Ray; the same rows (and CSV) as :func:`cnnkit.batch.predict_paths`.

    Args:
        model: run folder, ``.keras`` file or exported ``model.json`` (readable by every Ray node).
        address: a Ray cluster (``HEAD:6379``); ``None`` starts a local loopback instance of ``num_cpus``.
        actors: model replicas (one CPU each); default one per CPU that Ray reports.
        tta: ``False`` predicts one view per image even where the model's recipe asks for test-time
            augmentation (:mod:`cnnkit.tta`).

    Example:
        >>> predict_paths_ray("runs/a", ["photos/"], out="predictions.csv")  # doctest: +SKIP
    """
    require_ray()
    if actors is not None and actors < 1:
        raise ConfigError(f"Expected at least 1 Ray actor. Received: actors={actors}.", "Fix the --ray-actors option.")
    from cnnkit.batch import BatchResult, expand_inputs, write_csv
    from cnnkit.loading import load

    paths = expand_inputs(inputs)
    load(model)  # fail here, with cnnkit's message, rather than inside every actor
    results: list[FileResult | None] = [None] * len(paths)
    with ray_session(address, num_cpus) as ray:
        replicas = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        replicas = min(replicas, math.ceil(len(paths) / batch_size))  # an actor per batch at most: each loads the model
        # Actors decode absolute paths (their working folder is not ours); rows keep the paths as given.
        items = [{"index": i, "file": str(p.absolute())} for i, p in enumerate(paths)]
        dataset = ray.data.from_items(items).map_batches(
            PredictActor, batch_format="numpy", batch_size=batch_size, num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=replicas),
            fn_constructor_kwargs={"model": str(Path(model).absolute()), "top_k": top_k, "tta": tta},
        )
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars, shown = progress, context.enable_progress_bars
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for index, labels, probs, error in zip(batch["index"], batch["top_labels"], batch["top_probs"],
                                                       batch["error"]):
                    results[int(index)] = _result(paths[int(index)], labels, probs, str(error))
        finally:
            context.enable_progress_bars = shown
    files = [r for r in results if r is not None]
    if len(files) != len(paths):  # Ray lost rows: never write a CSV that silently misses files
        raise RuntimeError(f"Ray returned {len(files)} of {len(paths)} rows.")
    if out is not None:
        write_csv(out, files)
    return BatchResult(files=files, out=Path(out) if out else None)
