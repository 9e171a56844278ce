"""One run, end to end: data → fit → save → evaluate on the test set once → report files."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit import artifact
from cnnkit.datasets import Dataset
from cnnkit.diagnostics import Calibration, calibration
from cnnkit.errors import ConfigError
from cnnkit.evaluation import evaluate_probabilities
from cnnkit.fileio import write_json, write_text
from cnnkit.models import build_model
from cnnkit.models.contract import check_model
from cnnkit.plots import plot_history
from cnnkit.predictor import Predictor
from cnnkit.progress import reporting
from cnnkit.report import build_report, write_evaluation
from cnnkit.training import distributed
from cnnkit.training.auto import prepare
from cnnkit.training.balance import class_weights
from cnnkit.training.budget import Plan, planned
from cnnkit.training.config import TrainConfig, metadata_for
from cnnkit.training.fit import fit, plan_budget, validation_size
from cnnkit.training.launch import relaunch
from cnnkit.training.lock import run_folder_lock
from cnnkit.training.result import Run
from cnnkit.training.search import base_plan, can_search, search, worth_searching
from cnnkit.training.transfer import fit_transfer, load_weights

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

RunResult = Run  # the name before the notebook API


def _check_folder(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an ``out`` this run may not write (a folder cnnkit did not make, a run that exists); change nothing."""
    if resume or not run_dir.exists() or not any(run_dir.iterdir()):
        return
    if not (run_dir / artifact.CONFIG).is_file():  # never delete a folder cnnkit did not make
        raise ConfigError("The run folder is not empty and is not a cnnkit run folder. "
                          f"Received: out={str(run_dir)!r}.",
                          "Choose an empty or new out folder.", params="out")
    if overwrite:
        return
    unfinished = artifact.unfinished_run(run_dir)
    if unfinished is None:
        raise ConfigError(f"The run folder already holds a finished run. Received: out={str(run_dir)!r}.",
                          "Pass overwrite=True to replace it, or choose another out.", params=("overwrite", "out"))
    raise ConfigError(f"The run folder holds an unfinished run ({unfinished}). Received: out={str(run_dir)!r}.",
                      "Pass resume=True to continue it, overwrite=True to start it again, or choose another out.",
                      params=("resume", "overwrite", "out"))


def _prepare_folder(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Empty ``out`` (an old run, with ``overwrite``) and make it; :func:`_check_folder` said it may."""
    if not resume:
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          verbose: int | str = "auto", dataset: Dataset | None = None, model: keras.Model | None = None,
          request: dict[str, Any] | None = None) -> Run:
    """Train ``config`` into the run folder ``out`` and evaluate it on the test set.

    ``verbose`` is Keras' (0 silent, 1 a live bar, 2 a line per epoch, "auto": a bar in a terminal); it
    governs cnnkit's own progress lines too (:mod:`cnnkit.progress`). ``dataset``: data already in
    memory, used instead of loading ``config.data``; ``model``: a Keras model to train instead of the
    recipe's (the recipe gives the optimizer, schedule and epochs); ``request``: what the caller asked
    for, recorded in ``config.json`` (:func:`cnnkit.train` compares it when a notebook cell runs again).
    The friendlier front, which takes names, Datasets or arrays, is :func:`cnnkit.training.api.train`.

    Example:
        >>> train(TrainConfig(recipe="fast"), "runs/demo").metrics["test_accuracy"]  # doctest: +SKIP
        0.99...
    """
    with reporting(verbose):
        return _train(config, Path(out), resume=resume, overwrite=overwrite, verbose=verbose, dataset=dataset,
                      model=model, request=request or {})


def _train(config: TrainConfig, run_dir: Path, *, resume: bool, overwrite: bool, verbose: int | str,
           dataset: Dataset | None, model: keras.Model | None, request: dict[str, Any]) -> Run:
    """:func:`train`, its lines already governed by ``verbose``: check and load everything, then lock the folder."""
    if resume:
        config = relaunch(TrainConfig.from_run(run_dir), config)  # this launch's process_id, coordinator
        if (run_dir / artifact.MODEL).is_file() and not (run_dir / artifact.CHECKPOINT).is_file():
            raise ConfigError(f"The run in {run_dir} already finished; there is nothing to resume. "
                              "Received: resume=True.",
                              "Use it as it is (evaluate, predict, serve it), or train it again with overwrite=True "
                              "instead of resume=True.", params=("overwrite", "resume"))
    # Before touching the run folder: a bad path leaves nothing behind. Recipe auto looks at the data here.
    config, dataset, choice = prepare(config, dataset, own_model=model is not None)
    if choice:
        log.info(choice)
    distributed.setup(config)  # data-parallel: join the other processes before anything touches a device
    class_weights(config.class_weight, dataset.y_train, dataset.class_names)  # a bad spec, before the folder
    # Like a bad path, an image size the recipe's layers cannot take leaves nothing behind: a symbolic build finds it.
    if model is not None:  # the caller's own model: its input and output must fit the data
        check_model(model, dataset)
    else:
        with distributed.without_distribution():  # a throwaway model: its variables need not span the processes
            probe = build_model(config.preset, input_shape=dataset.input_shape, num_classes=dataset.num_classes)
            if config.preset.backbone:  # and weights that are missing, unverified or of another network
                load_weights(probe, config)
    chief = distributed.is_chief()  # in a data-parallel run only process 0 writes the run folder
    with run_folder_lock(run_dir) if chief else contextlib.nullcontext():  # one writer per run folder
        return _train_into(run_dir, config, dataset, resume=resume, overwrite=overwrite, verbose=verbose,
                           chief=chief, choice=choice, model=model, request=request)


def _train_into(run_dir: Path, config: TrainConfig, dataset: Dataset, *, resume: bool, overwrite: bool,
                verbose: int | str, chief: bool, choice: str = "", model: keras.Model | None = None,
                request: dict[str, Any] | None = None) -> Run:
    """Everything :func:`train` does once the run folder is this process's: write, fit, evaluate, report."""
    if chief:
        _check_folder(run_dir, resume, overwrite)
    # A resumed run keeps what its first launch recorded (auto's choice, the budget's plan, the profile, the search).
    record = artifact.read_json(run_dir / artifact.CONFIG) if resume else {}
    if request:
        record["request"] = request
    pending = record.get("search", {}) if not record.get("search", {}).get("done") else {}
    plan, searching = None, bool(pending)
    backbone = bool(config.preset.backbone)
    if config.budget and not resume and not backbone:  # a resumed run keeps the epochs its config.json recorded
        plan = base_plan(config, dataset, config.budget * 60)  # a budget too small fails here, before the folder
        searching = (bool(choice) and chief and model is None and can_search(config)
                     and worth_searching(plan, config.preset, config.budget * 60))
        if searching:
            pending, plan = {"done": False, "base_epoch_seconds": plan.epoch_seconds}, None
        else:
            config = planned(config, plan)
            log.info(plan.line())
    if chief:
        _prepare_folder(run_dir, resume, overwrite)
        _record(run_dir, record, config, choice, plan, dataset, pending)
    if searching and config.budget:  # recipe auto: candidates on the validation split, then the winner's plan
        budget = config.budget
        found = search(config, dataset, run_dir, budget_seconds=budget * 60,
                       epoch_seconds=pending["base_epoch_seconds"], validation_images=validation_size(dataset, config))
        log.info(f"Search: {len(found.entries)} candidates in {found.seconds:.0f} s; {found.reason}.\n{found.table()}")
        left, least = budget * 60 - found.seconds, found.least_final_seconds()
        if left < least:  # a machine slower than the plan's measure: one short epoch rather than no model
            log.warning(f"The search left {max(left, 0):.1f} s of the budget; the winner's training takes at least "
                        f"{least:.1f} s, so the budget is overrun by about {least - left:.1f} s.")
        winner = dataclasses.replace(config, recipe=found.winner, epochs=0, batch_size=0, learning_rate=0.0,
                                     budget=max(left, least) / 60).resolve()
        config, plan = plan_budget(dataset, winner)  # what is left of the budget
        config = dataclasses.replace(config, budget=budget)  # the budget given, all of it, is the run's
        log.info(plan.line())
        _record(run_dir, record, config, choice, plan, dataset, {**found.to_dict(), **pending, "done": True})
    log.info(f"Data: {dataset.name} from {dataset.source or config.data}: train {len(dataset.x_train)}, "
             f"test {len(dataset.x_test)}, {dataset.num_classes} classes, input {dataset.input_shape}.")
    if dataset.report:
        log.info(dataset.report)
        if chief:
            write_text(run_dir / artifact.DATA_REPORT, dataset.report + "\n")
    if backbone:  # two stages: the head on cached features, then fine-tuning (a resumed run goes on with it)
        fitted = fit_transfer(dataset, config, run_dir, resume=resume, verbose=verbose)
    else:
        # After a search this launch ran, the winner's training starts here, kept to its plan.
        fitted = fit(dataset, config, run_dir, resume=resume and not searching, verbose=verbose, budget=plan,
                     model=model)
    if plan:  # the budget's keeper may have moved the schedule's end
        config = dataclasses.replace(config, epochs=fitted.epochs)
    metadata = metadata_for(dataset, config)
    if chief:
        artifact.save_model(fitted.model, run_dir / artifact.MODEL, metadata)
    predictor = Predictor(fitted.model, metadata)
    metrics, probs, cal = evaluate_run_model(predictor, dataset, run_dir, write=chief)
    history = fitted.history
    epochs = len(history.get("loss", []))
    seconds = sum(history.get("epoch_seconds", []))  # fit + per-epoch validation, resumed epochs included
    metrics.update({
        "epochs": epochs,
        "val_accuracy": history["val_accuracy"][-1] if history.get("val_accuracy") else None,
        "train_size": fitted.train_size,
        "val_size": fitted.val_size,
        "train_seconds": round(seconds, 3),
        **_search_metrics(record.get("search"), seconds),
        "train_images_per_second": round(epochs * fitted.images_per_epoch / seconds, 1) if seconds else None,
        **({"transfer": fitted.stages} if fitted.stages else {}),
    })
    if not chief:  # same metrics as process 0, which writes them
        return Run(run_dir, metrics, written=False, trained_model=fitted.model)
    write_json(run_dir / artifact.METRICS, metrics)
    plot_history(history, run_dir / artifact.CURVES)
    build_report(run_dir, predictor=predictor, dataset=dataset, probs=probs, cal=cal)
    shutil.rmtree(run_dir / artifact.CHECKPOINT_DIR, ignore_errors=True)  # finished: the model is saved
    return Run(run_dir, metrics, trained_model=fitted.model)


def evaluate_run_model(predictor: Predictor, dataset: Dataset, run_dir: Path,
                       write: bool = True) -> tuple[dict[str, Any], np.ndarray, Calibration]:
    """Evaluate on the test set; write the confusion matrix, per-class table and prediction grid.

    ``write=False`` (the other processes of a data-parallel run) computes the same and writes nothing.

    Returns the metrics, the test-set probabilities and their calibration (for the report).
    """
    start = time.perf_counter()
    probs = predictor.predict_proba(dataset.x_test)
    seconds = time.perf_counter() - start
    result = evaluate_probabilities(dataset.y_test, probs, dataset.class_names)
    if write:
        write_evaluation(result, dataset.x_test, dataset.y_test, probs, dataset.class_names, run_dir)
    cal = calibration(dataset.y_test, probs)
    metrics: dict[str, Any] = {
        "test_accuracy": result.accuracy, "test_loss": result.loss, "test_samples": int(len(probs)),
        "inference_images_per_second": round(len(probs) / max(seconds, 1e-9), 1), "ece": cal.ece}
    metrics.update({k: v for k, v in result.to_dict().items() if k not in ("accuracy", "loss", "confusion")})
    if predictor.tta:  # the served number averages views (cnnkit.tta); record what one view scores too
        single = Predictor(predictor.model, predictor.metadata, predictor.batch_size, tta=False)
        metrics["tta"] = dict(predictor.tta)
        metrics["test_accuracy_single_view"] = evaluate_probabilities(
            dataset.y_test, single.predict_proba(dataset.x_test), dataset.class_names).accuracy
    return metrics, probs, cal


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded with every run."""
    from cnnkit._backend import keras

    return {
        "keras": keras.__version__, "backend": keras.backend.backend(), "python": platform.python_version(),
        "platform": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__,
    }


def _record(run_dir: Path, record: dict[str, Any], config: TrainConfig, choice: str, plan: Plan | None,
            dataset: Dataset, search_state: dict[str, Any]) -> None:
    """Write config.json: the resolved config, its recipe as data, and what chose and planned them."""
    record.update({"train": config.to_dict(), "preset": config.preset.to_dict(), "environment": environment()})
    if choice:
        record["auto"] = choice
    if plan:
        record["budget_plan"] = plan.to_dict()
    if search_state:
        record["search"] = search_state
    if dataset.profile is not None:
        record["data_profile"] = dataset.profile.to_dict()
    write_json(run_dir / artifact.CONFIG, record)


def _search_metrics(found: dict[str, Any] | None, train_seconds: float) -> dict[str, Any]:
    """What recipe auto's search cost, and the training time of the whole budget (the search's and the winner's)."""
    if not found or not found.get("done"):
        return {}
    return {"search_seconds": found["seconds"], "search_candidates": len(found["leaderboard"]),
            "budget_used_seconds": round(found["seconds"] + train_seconds, 3)}
