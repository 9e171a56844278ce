"""Batch prediction on Ray Data: the rows of :mod:`cnnkit.batch`, computed by a pool of Ray actors.

The driver lists the files (:func:`cnnkit.batch.expand_inputs`), turns them into a dataset of
``(index, file)`` rows and sends it through ``map_batches`` to actors that each load the model once
and run :func:`cnnkit.batch.predict_chunk`: the same decoder, the same batching code, a bad file
becomes its own error row. The driver puts the answers back in input order and writes the CSV with
:func:`cnnkit.batch.write_csv`, so ``--engine ray`` and the single-process path give the same file.
Ray's own console output stays in its session logs; a failure in Ray or a worker becomes one
:class:`cnnkit.errors.EngineError` naming the worker's first error line.

Without ``address`` a local Ray instance is started on loopback and shut down afterwards; with
``address`` the job runs on that cluster (model and image paths must then be readable on every node,
e.g. a shared file system).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.errors import ArtifactError, ConfigError, EngineError, require

if TYPE_CHECKING:  # imported where used: a Ray worker unpickling PredictActor must not load Keras noisily
    from cnnkit.batch import BatchResult, FileResult

# Set before Ray is imported, this keeps a local Ray's node address and every listener on 127.0.0.1
# (checked with `ss -ltnp`); without it Ray takes the machine's external address and binds every interface.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
ENGINE_HINT = ("Rerun with --debug for the full traceback, and check that the run folder and the images are "
               "readable on every Ray node.")
# A Python traceback's exception line: "pyarrow.lib.ArrowTypeError: Can't unify ...", "ArtifactError: ...".
_EXCEPTION_LINE = re.compile(r"^((?:[A-Za-z_]\w*\.)*)([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)): (.+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def require_ray() -> None:
    """Raise a ConfigError naming the extra to install when Ray Data is missing (without importing Ray)."""
    require("ray", "ray", "pyarrow", purpose="Batch prediction on Ray")


# The driver's console gets cnnkit's lines only: Ray's own warnings at start-up ("Token authentication is
# enabled ...") stay below ERROR, and workers' stdout/stderr (TensorFlow start-up, Ray Data's retries) stay in
# the session's log files instead of being streamed to the driver. A real failure still reaches the user, as
# the exception predict_paths_ray turns into an EngineError.
_QUIET_INIT: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Use the running Ray session, connect to ``address``, or start a local loopback one (shut down after)."""
    require_ray()
    if not address:
        # Ray reads this when it is first imported, and its own processes inherit it at start-up.
        os.environ[LOOPBACK_ENV] = "0"
    import ray
    import ray.data

    if ray.is_initialized():  # the caller owns it (tests, notebooks)
        yield ray
        return
    if address:
        _check_reachable(address)
        ray.init(address=address, **_QUIET_INIT)
    else:
        constants = sys.modules.get("ray._private.ray_constants")
        if getattr(constants, "ENABLE_RAY_CLUSTER", False):
            raise ConfigError(
                "Expected a local Ray instance on loopback only, but it would listen on every network interface. "
                f"Received: ray imported before {LOOPBACK_ENV}=0 was set.",
                f"Set {LOOPBACK_ENV}=0 before importing ray, start Ray yourself (ray.init), or pass an address.",
                params="address")
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **_QUIET_INIT)
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse, within ``timeout`` seconds, a ``HOST:PORT`` nobody answers on (``ray.init`` retries for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():  # ray://, auto: Ray's own forms, Ray checks them
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"Cannot reach the Ray cluster at {address}: {exc.strerror or exc}. "
                          f"Received: address={address!r}.",
                          "Start it with `ray start --head --port=6379` on the head machine, or fix the address "
                          "(HEAD:PORT, as `ray start --head` printed it).") from None


class PredictActor:
    """A Ray Data callable class: loads the model once, then predicts batches of ``(index, file)`` rows.

    Every column it returns has the same Arrow type in every batch, so Ray can join any batches: class
    indices (int64) rather than names, whose fixed string width would be each batch's longest label, and
    errors as a 1-D object array of ``str``, which Arrow stores as variable-width ``string``.
    """

    def __init__(self, model: str, top_k: int, class_names: Sequence[str], tta: bool = True) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # The loader `cnnkit predict` uses (run folder, .keras or model.json); it imports Keras through
        # cnnkit._backend, quietly: no TensorFlow start-up lines from every actor.
        from cnnkit.loading import load

        self.predictor = load(model, tta=tta)
        if self.predictor.class_names != list(class_names):  # the driver turns indices into its own names
            raise ArtifactError(f"The model at {model} has other classes on this Ray node than on the driver. "
                                f"Received: {self.predictor.class_names} here, {list(class_names)} on the driver.",
                                "Make the same run folder readable at the same path on every node.")
        self.index = {name: i for i, name in enumerate(self.predictor.class_names)}
        self.top_k = top_k
        self.width = min(max(1, top_k), len(self.predictor.class_names))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cnnkit.batch import predict_chunk

        files = predict_chunk(self.predictor, [Path(str(f)) for f in batch["file"]], top_k=self.top_k)
        n, k = len(files), self.width
        classes, probs = np.full((n, k), -1, dtype=np.int64), np.full((n, k), np.nan)
        for i, f in enumerate(files):
            if f.prediction is not None:
                classes[i] = [self.index[label] for label, _ in f.prediction.top_k]
                probs[i] = [p for _, p in f.prediction.top_k]
        # Float64 carries each float32 probability exactly: the driver rebuilds the same Prediction.
        errors, warnings_ = np.empty(n, dtype=object), np.empty(n, dtype=object)
        errors[:], warnings_[:] = [f.error for f in files], [f.warning for f in files]
        return {"index": batch["index"], "top_classes": classes, "top_probs": probs, "error": errors,
                "warning": warnings_}


def _result(path: Path, class_names: Sequence[str], classes: Sequence[int], probs: Sequence[float],
            error: str, warning: str) -> FileResult:
    from cnnkit.batch import FileResult
    from cnnkit.predictor import Prediction

    if error:
        return FileResult(path, None, error)
    pairs = [(class_names[int(c)], float(p)) for c, p in zip(classes, probs)]
    return FileResult(path, Prediction(label=pairs[0][0], probability=pairs[0][1], top_k=pairs), warning=warning)


def first_error_line(exc: BaseException) -> str:
    """The line that says what went wrong in a Ray worker, from the traceback text Ray sends back.

    The last exception line that is not Ray's own wins (``ArrowTypeError: Can't unify ...``,
    ``ArtifactError: ...``), without its module path; otherwise the exception's own first line.
    """
    cause = getattr(exc, "cause", None)  # RayTaskError keeps the worker's exception object
    text = _ANSI.sub("", f"{exc}\n{cause}" if cause is not None else str(exc))
    found = [m for m in map(_EXCEPTION_LINE.match, text.splitlines()) if m]
    ours = [m for m in found if not m.group(1).startswith("ray.")] or found
    if ours:
        return f"{ours[-1].group(2)}: {ours[-1].group(3).strip()}"
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


@contextlib.contextmanager
def _ray_data_console_off() -> Iterator[None]:
    """Keep Ray Data's console lines (progress logged as INFO, "Full stack trace" errors) off the terminal.

    Only the ``ray.data`` logger's stream handlers are turned down: its log files in the Ray session folder
    still get every record, and a failure reaches the user as the exception raised from execution.
    """
    streams = [h for h in logging.getLogger("ray.data").handlers if isinstance(h, logging.StreamHandler)
               and not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in streams]
    for handler in streams:
        handler.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for handler, level in zip(streams, levels):
            handler.setLevel(level)


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

    Raises:
        EngineError: Ray or a worker failed (a model the workers cannot load, a lost node); the message
            holds the worker's first error line.

    Example:
        >>> predict_paths_ray("runs/a", ["photos/"], out="predictions.csv")  # doctest: +SKIP
    """
    require_ray()
    if actors is not None and actors < 1:
        raise ConfigError(f"Expected at least 1 Ray actor. Received: actors={actors}.", "Set actors to 1 or more.",
                          params="actors")
    from cnnkit.batch import BatchResult, expand_inputs, write_csv
    from cnnkit.loading import load

    paths = expand_inputs(inputs)
    driver = load(model)  # fail here, with cnnkit's message, rather than inside every actor
    class_names = driver.class_names
    results: list[FileResult | None] = [None] * len(paths)
    with ray_session(address, num_cpus) as ray:
        replicas = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        replicas = min(replicas, math.ceil(len(paths) / batch_size))  # an actor per batch at most: each loads the model
        # Actors decode absolute paths (their working folder is not ours); rows keep the paths as given.
        items = [{"index": i, "file": str(p.absolute())} for i, p in enumerate(paths)]
        # No actor restarts on a local instance: with Ray Data's default (max_restarts=-1) Ray Core logs an
        # "E ... core_worker.cc" line for every actor pool (ray-project/ray#57733), and a local actor that
        # died would die again. Ray 2.60 takes max_restarts only as a deprecated keyword (cnnkit pins 2.60).
        restarts = {} if address else {"max_restarts": 0}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", DeprecationWarning)
            dataset = ray.data.from_items(items).map_batches(
                PredictActor, batch_format="numpy", batch_size=batch_size, num_cpus=1,
                compute=ray.data.ActorPoolStrategy(size=replicas), **restarts,
                fn_constructor_kwargs={"model": str(Path(model).absolute()), "top_k": top_k,
                                       "class_names": class_names, "tta": tta},
            )
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars, shown = progress, context.enable_progress_bars
        try:
            with _ray_data_console_off():
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    for index, classes, probs, error, warning in zip(batch["index"], batch["top_classes"],
                                                                     batch["top_probs"], batch["error"],
                                                                     batch["warning"]):
                        results[int(index)] = _result(paths[int(index)], class_names, classes, probs, str(error),
                                                      str(warning))
        except ray.exceptions.RayError as exc:
            failure = first_error_line(exc).rstrip(".")
            raise EngineError(f"Ray failed while predicting {len(paths)} files: {failure}. "
                              f"Received: model={str(model)!r}.", ENGINE_HINT) from exc
        finally:
            context.enable_progress_bars = shown
    files = [r for r in results if r is not None]
    if len(files) != len(paths):  # Ray lost rows: never write a CSV that silently misses files
        raise EngineError(f"Ray returned {len(files)} of {len(paths)} rows. Received: model={str(model)!r}.",
                          ENGINE_HINT)
    if out is not None:
        write_csv(out, files)
    return BatchResult(files=files, out=Path(out) if out else None, trained_on=driver.describe_training())
