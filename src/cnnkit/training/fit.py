"""Train a preset on a dataset into a run folder: split, compile, fit, checkpoint, resume.

The test set is not touched here: model choices (early stopping, schedules)
see only the validation split carved, stratified and seeded, from the training
set. :func:`cnnkit.training.run.train` evaluates on the test set once, at the end.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import _backend, artifact
from cnnkit._backend import keras
from cnnkit.datasets import Dataset, Split, stratified_split
from cnnkit.errors import ConfigError
from cnnkit.fileio import remove_stale_temporaries, write_json
from cnnkit.models import build_model, make_optimizer, to_float32
from cnnkit.presets import Preset
from cnnkit.progress import keras_verbose
from cnnkit.training import distributed
from cnnkit.training.balance import class_weights
from cnnkit.training.budget import Plan, measure, plan, planned
from cnnkit.training.callbacks import BudgetKeeper, RunRecorder, TimeBudget
from cnnkit.training.config import TrainConfig, metadata_for
from cnnkit.training.inputs import fit_inputs, with_sample_weights

log = logging.getLogger(__name__)


def split_dataset(dataset: Dataset, config: TrainConfig) -> Split:
    """Carve the stratified, seeded validation split (the test set stays aside).

    A dataset that comes with its own validation split (a ``val/`` folder) keeps it.
    """
    if dataset.x_val is not None and dataset.y_val is not None:
        return Split(dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val)
    train_idx, val_idx = stratified_split(dataset.y_train, config.val_fraction, config.seed)
    return Split(dataset.x_train[train_idx], dataset.y_train[train_idx],
                 dataset.x_train[val_idx], dataset.y_train[val_idx])


def validation_size(dataset: Dataset, config: TrainConfig) -> int:
    """How many images :func:`split_dataset` holds out for validation (nothing is copied to count them)."""
    if dataset.y_val is not None:
        return len(dataset.y_val)
    return len(stratified_split(dataset.y_train, config.val_fraction, config.seed)[1])


def _learning_rate(config: TrainConfig, steps: int) -> Any:
    peak = config.learning_rate
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=steps, alpha=0.0)
    if config.schedule == "warmup-cosine":
        # One-cycle-like: linear warm-up over the first ~15 % of steps, cosine decay to 0 after.
        warmup = max(1, int(0.15 * steps))
        return keras.optimizers.schedules.CosineDecay(
            peak / 10, decay_steps=max(1, steps - warmup), alpha=0.0, warmup_target=peak, warmup_steps=warmup)
    return peak


def end_schedule_at(model: keras.Model, steps: int) -> None:
    """Move the end of ``model``'s cosine schedule (:func:`_learning_rate`) to training step ``steps``.

    The warm-up keeps its length; the train function is traced again, so the new end takes effect on
    every backend. A schedule without an end (a constant rate, ``plateau``) is left alone.
    """
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # a loss-scaling wrapper's own
    schedule = getattr(optimizer, "_learning_rate", None)
    if not isinstance(schedule, keras.optimizers.schedules.CosineDecay):
        return
    warmup = schedule.warmup_steps if schedule.warmup_target is not None else 0
    schedule.decay_steps = max(1, steps - warmup)
    model.make_train_function(force=True)


def compile_model(model: keras.Model, preset: Preset, config: TrainConfig, steps_per_epoch: int) -> None:
    """Compile with the preset's optimizer (every argument explicit) and the configured schedule."""
    lr = _learning_rate(config, steps_per_epoch * config.epochs)
    model.compile(
        optimizer=make_optimizer(preset.optimizer, learning_rate=lr),
        loss="sparse_categorical_crossentropy",  # integer labels: no one-hot step to get wrong
        metrics=["accuracy"],
        steps_per_execution=preset.steps_per_execution,
        jit_compile=_backend.jit_compile(),
    )


def _callbacks(config: TrainConfig, recorder: RunRecorder, verbose: int) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    say = 1 if verbose else 0  # Keras' own lines ("reducing learning rate", "early stopping") follow verbose too
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=1, verbose=say))
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.early_stopping, restore_best_weights=True, verbose=say))
    if config.max_minutes:
        callbacks.append(TimeBudget(config.max_minutes * 60))
    # The recorder runs last so that a checkpoint sees the learning rate after any change.
    callbacks.append(recorder)
    return callbacks


@dataclass
class FitResult:
    """A trained model, its whole history (resumed epochs included) and what it was trained on."""

    model: keras.Model
    history: dict[str, list[float]]
    train_size: int
    val_size: int
    images_per_epoch: int
    epochs: int  # the epochs the schedule was set for: config.epochs, or where a budget's keeper moved it
    stages: dict[str, Any] = dataclasses.field(default_factory=dict)  # what a two-stage run measured (transfer)


def fit(dataset: Dataset, config: TrainConfig, run_dir: Path, *, resume: bool = False,
        verbose: int | str = "auto", callbacks: list[keras.callbacks.Callback] | None = None,
        budget: Plan | None = None, model: keras.Model | None = None) -> FitResult:
    """Train into ``run_dir``; return the model and its history.

    With ``resume=True`` the model, optimizer state, schedule position and history
    come from ``run_dir/checkpoints/last.keras`` and training continues at the next epoch.
    ``callbacks`` are extra Keras callbacks, run before cnnkit's own recorder. ``budget``, the plan
    that set ``config.epochs``, is kept at every epoch's end (:class:`BudgetKeeper`): the schedule's end
    moves, and ``run_dir/config.json`` records it, when more or fewer epochs fit than were planned.
    ``model``: the caller's own model (checked by :func:`cnnkit.models.contract.check_model`), compiled with
    the recipe's optimizer and trained in place, instead of the recipe's.
    """
    run_dir = Path(run_dir)
    preset = config.preset
    keras.utils.set_random_seed(config.seed)
    split = split_dataset(dataset, config)
    weights, weighting = class_weights(config.class_weight, split.y_train, dataset.class_names)
    log.info(weighting)
    steps = math.ceil(len(split.x_train) / config.batch_size)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    history: dict[str, list[float]] = {}
    initial_epoch = 0
    checkpoint = run_dir / artifact.CHECKPOINT
    if resume and distributed.is_chief():  # the other processes of a data-parallel run write nothing
        remove_stale_temporaries(run_dir)
    if resume and not checkpoint.is_file():
        log.info(f"No completed epoch to resume from in {run_dir}; starting from epoch 1.")
    if resume and checkpoint.is_file():
        model, meta = artifact.load_model(checkpoint, compile=True)
        state = meta.extra.get("training", {})
        initial_epoch, history = int(state.get("epoch", 0)), state.get("history", {})
        log.info(f"Resuming {run_dir} after epoch {initial_epoch}/{config.epochs}.")
    else:
        if model is None:
            model = build_model(preset, input_shape=dataset.input_shape, num_classes=dataset.num_classes,
                                precision=config.precision or "float32")
        compile_model(model, preset, config, steps)
    recorder = RunRecorder(run_dir, lambda state: metadata_for(dataset, config, state), history)
    # One line per epoch in logs, a live bar in a terminal.
    level = keras_verbose(verbose)
    keeper = _keeper(model, budget, config, steps, run_dir) if budget and not resume else None
    if initial_epoch < config.epochs:
        inputs, feed_callbacks = fit_inputs(split, config, initial_epoch)
        if weights and inspect.isgenerator(inputs["x"]):  # Keras takes class_weight for every feed but generators
            inputs["x"], weights = with_sample_weights(inputs["x"], weights), None
        # One of each callback for every fit call below: a --max-minutes clock runs on.
        epochs, own = config.epochs, _callbacks(config, recorder, level)
        while True:
            # steps_per_epoch is a cap: an N above one pass runs one pass, as the schedule assumes (steps).
            model.fit(**inputs, epochs=epochs, initial_epoch=initial_epoch, class_weight=weights,
                      steps_per_epoch=steps if config.steps_per_epoch else None,
                      callbacks=[*feed_callbacks, *(callbacks or []), *([keeper] if keeper else []), *own],
                      verbose=level)
            if not (keeper and keeper.extend):
                break
            initial_epoch, epochs = keeper.done, keeper.epochs  # the budget holds more epochs: go on
    return FitResult(to_float32(distributed.to_local(model), preset), recorder.history, len(split.x_train),
                     len(split.x_val), min(len(split.x_train), steps * config.batch_size),
                     keeper.epochs if keeper else config.epochs)


def _keeper(model: keras.Model, budget: Plan, config: TrainConfig, steps: int, run_dir: Path) -> BudgetKeeper | None:
    """The callback that keeps ``budget`` (none for a plan of one short epoch: there is nothing to move)."""
    if config.epochs == 1 and config.steps_per_epoch:
        return None

    def reschedule(epochs: int) -> None:
        end_schedule_at(model, epochs * steps)
        if distributed.is_chief():  # config.json holds the epochs, so --resume runs the same schedule
            record = artifact.read_json(run_dir / artifact.CONFIG)
            if record:
                record["train"]["epochs"] = epochs
                record.setdefault("budget_plan", {}).setdefault("replanned", []).append(
                    {"after_epoch": keeper.done, "epochs": epochs})
                write_json(run_dir / artifact.CONFIG, record)

    preset = config.preset
    keeper = BudgetKeeper(budget.budget_seconds, config.epochs, max(config.epochs, preset.max_epochs or preset.epochs),
                          reschedule)
    return keeper


def plan_budget(dataset: Dataset, config: TrainConfig) -> tuple[TrainConfig, Plan]:
    """``config`` with its epochs planned to fill ``config.budget`` minutes (:mod:`cnnkit.training.budget`).

    A throwaway model of the recipe trains a few batches of this dataset to measure a step, a
    validation pass and a checkpoint on this machine.
    """
    split = split_dataset(dataset, config)
    chosen = _measured_plan(config, split, dataset.input_shape, dataset.num_classes, len(split.x_train),
                            len(split.x_val))
    return planned(config, chosen), chosen


def probe_plan(config: TrainConfig, input_shape: tuple[int, int, int], num_classes: int, n_train: int,
               n_val: int) -> Plan:
    """The plan for ``n_train`` training images of ``input_shape``, measured on random pixels: what a budget
    buys before any image is decoded (recipe auto chooses the photos' side with it)."""
    rng = np.random.default_rng(config.seed)
    rows = min(n_train, 24 * config.batch_size)
    x = rng.integers(0, 256, (rows, *input_shape), dtype=np.uint8)
    y = rng.integers(0, num_classes, rows).astype(np.int64)
    split = Split(x, y, x[:config.batch_size * 2], y[:config.batch_size * 2])
    return _measured_plan(config, split, input_shape, num_classes, n_train, n_val)


def _measured_plan(config: TrainConfig, split: Split, input_shape: tuple[int, ...], num_classes: int,
                   n_train: int, n_val: int) -> Plan:
    preset = config.preset
    if not config.budget:
        raise ConfigError(f"Expected a budget to plan the epochs for. Received: budget={config.budget!r}.",
                          "Set budget (minutes).", params="budget")
    full = math.ceil(n_train / config.batch_size)
    steps = min(full, config.steps_per_epoch) if config.steps_per_epoch else full
    keras.utils.set_random_seed(config.seed)
    model = build_model(preset, input_shape=tuple(input_shape), num_classes=num_classes,
                        precision=config.precision or "float32")
    compile_model(model, preset, config, steps)
    inputs, _ = fit_inputs(split, dataclasses.replace(config, steps_per_epoch=1))  # arrays: an endless feed
    step, val_batch, save, first = measure(model, inputs, inputs["validation_data"], batch_size=config.batch_size,
                                           steps_per_execution=preset.steps_per_execution)
    return plan(config.budget * 60, step_seconds=step, steps_per_epoch=steps,
                val_seconds=val_batch * math.ceil(n_val / config.batch_size), checkpoint_seconds=save,
                batch_size=config.batch_size, max_epochs=preset.max_epochs or preset.epochs, start_seconds=first)
