"""``cnnkit tune``: search a recipe's hyperparameters with Optuna; the best trial becomes a normal run folder.

Each trial is the preset with five values changed (presets are data, so a trial is a
``dataclasses.replace`` of it):

* ``filters_scale``: every convolution's filter count times 0.5 … 2;
* ``kernel_size``: every convolution's kernel, 3 or 5;
* ``dropout``: the rate of the preset's last Dropout (one is added before the classifier head
  when the preset has none and the rate is above 0);
* ``learning_rate``: log-uniform from a tenth to ten times the preset's;
* ``batch_size``: 32 … 256.

A trial trains with cnnkit's own :func:`cnnkit.training.fit.fit` on the training split and scores the
last epoch's **validation** accuracy; the test set is not used during the search. After every epoch
the validation accuracy goes to Optuna, whose median pruner can stop a poor trial early.

Several ``cnnkit tune`` processes (on one machine or many) that name the same ``--study`` and
``--storage`` share one study: each takes the next trial until the study holds ``--trials`` of them.
The worker that ends when no trial is still running re-trains the best trial's values with
:func:`cnnkit.training.run.train` into ``--out``: a run folder like any other (the model, test metrics
measured once, report; ``config.json``'s ``preset`` section holds the tuned values), plus ``tune.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit import artifact
from cnnkit._backend import keras
from cnnkit.errors import ConfigError, require
from cnnkit.fileio import write_json
from cnnkit.models import build_model
from cnnkit.presets import Preset
from cnnkit.progress import reporting
from cnnkit.training.callbacks import ReportToOptuna
from cnnkit.training.config import TrainConfig, load_data
from cnnkit.training.fit import fit
from cnnkit.training.run import RunResult, train

log = logging.getLogger(__name__)

FILTER_SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)
KERNEL_SIZES = (3, 5)
BATCH_SIZES = (32, 64, 128, 256)
MAX_DROPOUT = 0.5
CONVOLUTIONS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
# The settings every worker of one study must share: a worker started with others would score
# its trials on another problem and mix them into the same ranking.
SHARED_SETTINGS = ("recipe", "data", "epochs", "val_fraction", "seed", "train_limit", "steps_per_epoch")
# Median pruning after the first few trials, from the first epoch on: short trials (2-3 epochs)
# would otherwise never be pruned.
PRUNER_STARTUP_TRIALS = 4
SQLITE_BUSY_SECONDS = 60  # several workers write to one SQLite file: wait for its lock, do not fail
# A running trial writes a heartbeat; one silent for the grace period (its worker was killed) is
# marked failed, so it neither counts towards --trials nor keeps the last worker waiting for it.
HEARTBEAT_SECONDS, GRACE_SECONDS = 30, 120


@dataclass
class TuneResult:
    """What a ``cnnkit tune`` worker saw at its end, and the run folder if it wrote it."""

    study: str
    trials: int  # finished trials in the study (every worker's)
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    run: RunResult | None


def import_optuna() -> Any:
    """The ``optuna`` module, or a ConfigError naming the extra to install."""
    require("tune", "optuna", purpose="Hyperparameter search (cnnkit tune)")
    import optuna

    return optuna


def suggest(trial: Any, base: Preset) -> dict[str, Any]:
    """Draw one trial's values around ``base``."""
    lr = base.optimizer["learning_rate"]
    return {
        "filters_scale": trial.suggest_categorical("filters_scale", FILTER_SCALES),
        "kernel_size": trial.suggest_categorical("kernel_size", KERNEL_SIZES),
        "dropout": trial.suggest_float("dropout", 0.0, MAX_DROPOUT),
        "learning_rate": trial.suggest_float("learning_rate", lr / 10, lr * 10, log=True),
        "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
    }


def tuned_preset(base: Preset, params: dict[str, Any], name: str, epochs: int | None = None) -> Preset:
    """``base`` with a trial's values (and the epochs they were tuned for) applied; ``params`` is recounted."""
    layers = []
    for kind, kwargs in base.layers:
        if kind in CONVOLUTIONS:
            kwargs = {**kwargs, "kernel_size": params["kernel_size"]}
            if "filters" in kwargs:
                kwargs["filters"] = max(1, round(kwargs["filters"] * params["filters_scale"]))
        layers.append((kind, kwargs))
    dropouts = [i for i, (kind, _) in enumerate(layers) if kind == "Dropout"]
    if dropouts:
        layers[dropouts[-1]] = ("Dropout", {**layers[dropouts[-1]][1], "rate": params["dropout"]})
    elif params["dropout"] > 0:
        layers.append(("Dropout", {"rate": params["dropout"]}))  # before the head build_model adds
    values = ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                       for key, value in params.items())
    preset = dataclasses.replace(
        base, name=name, description=f"{base.name} tuned with Optuna: {values}.", layers=tuple(layers),
        optimizer={**base.optimizer, "learning_rate": params["learning_rate"]}, batch_size=params["batch_size"],
        epochs=epochs or base.epochs, reported=None)
    return dataclasses.replace(preset, params=build_model(preset).count_params())


@contextlib.contextmanager
def _quiet_experimental(optuna: Any) -> Iterator[None]:
    """Heartbeats are "experimental" in Optuna 5.0 (pinned); say so here, not on every worker's terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_storage(url: str) -> Any:
    """Optuna's RDB storage for ``url``; SQLite waits for its lock and the file's folder is created."""
    optuna = import_optuna()
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError("Expected a database URL as storage, such as sqlite:///tune.db. "
                          f"Received: storage={url!r}.",
                          "Give every worker the same storage URL: sqlite:///PATH for one machine, "
                          "postgresql://… or mysql://… for several.", params="storage") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(5):
        try:
            with _quiet_experimental(optuna):
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                                  grace_period=GRACE_SECONDS)
        except (ImportError, sqlalchemy.exc.NoSuchModuleError) as exc:  # no driver for this kind of database
            raise ConfigError(f"Cannot open the storage database: {str(exc).rstrip('.')}. Received: storage={url!r}.",
                              "Use sqlite:///PATH, or install the database's driver "
                              "(e.g. pip install psycopg2-binary for postgresql://).", params="storage") from None
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
            # Two workers creating the tables of a new database at once: one wins, the other finds them next time.
            if attempt == 4:
                raise
            time.sleep(random.uniform(0.2, 1.0) * (attempt + 1))


def open_study(name: str, storage: str, config: TrainConfig) -> Any:
    """Create the study, or join it when another worker made it; refuse one made for other settings."""
    optuna = import_optuna()
    if not name:
        raise ConfigError("Expected a study name. Received: study=''.",
                          "Name the study (the same study for every worker).", params="study")
    study = optuna.create_study(study_name=name, storage=open_storage(storage), direction="maximize",
                                load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS))
    settings = {key: config.recipe_name if key == "recipe" else getattr(config, key) for key in SHARED_SETTINGS}
    known = study.user_attrs.get("cnnkit")
    if known is None:
        study.set_user_attr("cnnkit", settings)
    elif known != settings:
        differ = ", ".join(f"{k}={settings[k]!r}" for k in SHARED_SETTINGS if known.get(k) != settings[k])
        raise ConfigError(f"Study {name!r} was created for other settings ({known}). Received: {differ}.",
                          "Start every worker of a study with the same data, recipe, epochs, train_limit, "
                          "val_fraction and seed, or choose another study.",
                          params=("recipe", "epochs", "train_limit", "val_fraction", "seed", "study"))
    return study


def _counted(study: Any, states: tuple[Any, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def tune(config: TrainConfig, *, study: str, storage: str, trials: int, out: str | Path,
         overwrite: bool = False, verbose: int | str = "auto") -> TuneResult:
    """Run trials of ``study`` until it holds ``trials``; the last worker writes the best run to ``out``.

    ``verbose`` governs the progress lines and the best run's training, as in :func:`~cnnkit.training.run.train`.

    Example:
        >>> tune(TrainConfig(recipe="fast", epochs=2), study="fast", storage="sqlite:///tune.db",
        ...      trials=20, out="runs/tune-fast").best_value  # doctest: +SKIP
        0.98...
    """
    with reporting(verbose):
        return _tune(config, study=study, storage=storage, trials=trials, out=Path(out), overwrite=overwrite,
                     verbose=verbose)


def _tune(config: TrainConfig, *, study: str, storage: str, trials: int, out: Path, overwrite: bool,
          verbose: int | str) -> TuneResult:
    """:func:`tune`, its lines governed by ``verbose``."""
    optuna = import_optuna()
    if trials < 1:
        raise ConfigError(f"Expected at least 1 trial. Received: trials={trials}.", "Set trials to 1 or more.",
                          params="trials")
    config = config.resolve()
    base = config.preset
    if out.is_dir() and any(out.iterdir()) and not overwrite:  # say so now, not after all the trials
        raise ConfigError(f"The run folder already exists and is not empty. Received: out={str(out)!r}.",
                          "Pass overwrite=True to replace it with this study's best trial, or choose another out.",
                          params=("overwrite", "out"))
    search = open_study(study, storage, config)
    dataset = load_data(config)  # once per worker, shared by its trials
    worker = f"{socket.gethostname()}:{os.getpid()}"
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial: Any) -> float:
        trial.set_user_attr("worker", worker)
        preset = tuned_preset(base, suggest(trial, base), f"{base.name}-trial-{trial.number}", config.epochs)
        report = ReportToOptuna(trial)
        with tempfile.TemporaryDirectory(prefix="cnnkit-trial-") as scratch:
            # The trial's own recipe decides batch size and learning rate: the config leaves them unset.
            trial_config = dataclasses.replace(config, recipe=preset, batch_size=0, learning_rate=0.0).resolve()
            fitted = fit(dataset, trial_config, Path(scratch), verbose=0, callbacks=[report])
        keras.backend.clear_session()  # a worker builds many models: keep its memory flat
        value = fitted.history["val_accuracy"][-1]
        if report.pruned_at is not None:
            raise optuna.TrialPruned(f"validation accuracy {value:.4f} after epoch {report.pruned_at}")
        return value

    def taken() -> int:
        with _quiet_experimental(optuna):
            optuna.storages.fail_stale_trials(search)  # a killed worker's trial stops counting as running
        # Running trials count too: they will finish, so the study stops at `trials`, not one per worker later.
        return _counted(search, (*done, optuna.trial.TrialState.RUNNING))

    while taken() < trials:
        search.optimize(objective, n_trials=1)
    if not _counted(search, (optuna.trial.TrialState.COMPLETE,)):
        raise ConfigError(f"No trial of study {study!r} completed. Received: {len(search.trials)} trials, "
                          f"states {sorted({t.state.name for t in search.trials})}.",
                          "Look at the trials' errors above; a larger train_limit or more epochs may help.",
                          params=("train_limit", "epochs"))
    result = TuneResult(study, _counted(search, done), search.best_trial.number, search.best_value,
                        dict(search.best_params), None)
    if _counted(search, (optuna.trial.TrialState.RUNNING,)):
        log.info(f"Study {study!r}: other workers' trials are still running; the last worker to finish writes "
                 f"{out}. (Run this command again once they are done to write it yourself.)")
        return result
    result.run = write_best_run(search, base, config, out, storage=storage, overwrite=overwrite, verbose=verbose)
    return result


def write_best_run(search: Any, base: Preset, config: TrainConfig, out: Path, *, storage: str,
                   overwrite: bool = False, verbose: int | str = "auto") -> RunResult | None:
    """Re-train the study's best values with :func:`cnnkit.training.run.train` into ``out``; write ``tune.json``."""
    import sqlalchemy

    try:
        out.mkdir(parents=True, exist_ok=overwrite)  # the claim: of two workers ending together, one writes
    except FileExistsError:
        log.info(f"{out} already exists (another worker's run, or an earlier one); left as it is. "
                 "Run again with overwrite to rebuild it from the study's best trial.")
        return None
    best = search.best_trial
    preset = tuned_preset(base, best.params, f"{base.name}-tuned", config.epochs)
    log.info(f"Best of {len(search.trials)} trials: #{best.number}, validation accuracy {best.value:.4f}, "
             f"{best.params}. Re-training it into {out}.")
    run = train(dataclasses.replace(config, recipe=preset, batch_size=0, learning_rate=0.0), out,
                overwrite=overwrite, verbose=verbose)
    states: dict[str, int] = {}
    for trial in search.trials:
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    write_json(out / artifact.TUNE_JSON, {
        "study": search.study_name,
        "storage": sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True),
        "best_trial": best.number, "best_val_accuracy": best.value, "best_params": best.params,
        "trials": states, "workers": sorted({t.user_attrs.get("worker", "?") for t in search.trials}),
        "search_space": {"filters_scale": FILTER_SCALES, "kernel_size": KERNEL_SIZES, "dropout": [0.0, MAX_DROPOUT],
                         "learning_rate": [base.optimizer["learning_rate"] / 10, base.optimizer["learning_rate"] * 10],
                         "batch_size": BATCH_SIZES},
    })
    return run
