"""Keras callbacks that make a run survive a crash and leave its history on disk."""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnkit import artifact
from cnnkit._backend import keras
from cnnkit.fileio import write_json, write_text
from cnnkit.training import distributed
from cnnkit.training.budget import replan

log = logging.getLogger(__name__)


def history_to_csv(history: dict[str, list[float]]) -> str:
    """Render a Keras history dict as CSV, one row per epoch."""
    keys = list(history)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for i in range(max((len(v) for v in history.values()), default=0)):
        writer.writerow([i + 1, *(history[k][i] if i < len(history[k]) else "" for k in keys)])
    return buffer.getvalue()


class RunRecorder(keras.callbacks.Callback):
    """After every epoch: save a resumable checkpoint, then the history so far.

    The checkpoint (``checkpoints/last.keras``) holds the model, the optimizer
    state and, in its metadata, the completed epoch count and the history, in one
    atomically replaced file: a run killed at any moment resumes from its last
    completed epoch.
    """

    def __init__(self, run_dir: Path, metadata_for: Callable[[dict[str, Any]], artifact.ModelMetadata],
                 history: dict[str, list[float]] | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.metadata_for = metadata_for
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        logs["epoch_seconds"] = time.perf_counter() - self._epoch_start
        lr = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
        for key, value in logs.items():
            value = float(value)
            self.history.setdefault(key, []).append(value if math.isfinite(value) else float("nan"))
        if not distributed.is_chief():  # the other processes of a data-parallel run write nothing
            return
        state = {"epoch": epoch + 1, "history": self.history}
        with distributed.without_distribution():  # process 0 alone: nothing here may wait for the others
            artifact.save_model(self.model, self.run_dir / artifact.CHECKPOINT, self.metadata_for(state))
        write_json(self.run_dir / artifact.HISTORY_JSON, self.history)
        write_text(self.run_dir / artifact.HISTORY_CSV, history_to_csv(self.history))


class TimeBudget(keras.callbacks.Callback):
    """Stop before an epoch that would likely end after ``seconds`` of training.

    The estimate is the longest epoch so far, so a run stops at an epoch boundary
    (its checkpoint and history complete) rather than being cut mid-epoch.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._start = 0.0
        self._longest = 0.0
        self._epoch_start = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._start:  # a budgeted run may call fit again to add epochs: the clock runs on
            self._start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        self._longest = max(self._longest, now - self._epoch_start)
        if now - self._start + self._longest > self.seconds:
            log.info(f"Time budget of {self.seconds / 60:g} min reached after epoch {epoch + 1}; stopping.")
            self.model.stop_training = True


class BudgetKeeper(keras.callbacks.Callback):
    """Keep a ``--budget`` plan at every epoch's end: move the schedule's end when more or fewer epochs fit.

    An epoch's time is the span between two epoch ends (its steps, validation and the previous
    checkpoint), the median of the last five that traced nothing: a ``fit`` call's first epoch
    traces the train and test steps, and so does the first after the schedule moved. The plan moves
    on three such epochs, or fewer when fewer remain: one slow epoch early on is not a trend. When
    :func:`cnnkit.training.budget.replan` moves it, ``reschedule(epochs)`` moves the learning-rate
    schedule's end and records it; when the plan grows past the epochs ``model.fit`` was given, the
    keeper ends that call with ``extend`` set and the caller fits again from the next epoch
    (:func:`cnnkit.training.fit.fit`).
    """

    def __init__(self, budget_seconds: float, epochs: int, max_epochs: int, reschedule: Callable[[int], None],
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self.budget_seconds, self.epochs, self.max_epochs = budget_seconds, epochs, max_epochs
        self.reschedule, self.clock = reschedule, clock
        self.done, self.extend = 0, False
        self._start: float | None = None
        self._last_end: float | None = None
        self._traces = True  # the next epoch traces (a new fit call, or a moved schedule)
        self._clean: list[float] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._start is None:
            self._start = self.clock()
        self._traces, self.extend = True, False

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = self.clock()
        if not self._traces and self._last_end is not None:
            self._clean.append(now - self._last_end)
        self._traces, self._last_end, self.done = False, now, epoch + 1
        if self._clean and len(self._clean) >= min(3, self.epochs - self.done):
            recent = sorted(self._clean[-5:])
            per_epoch = recent[len(recent) // 2]
            start = now if self._start is None else self._start
            target = replan(elapsed=now - start, done=self.done, target=self.epochs, epoch_seconds=per_epoch,
                            budget_seconds=self.budget_seconds, max_epochs=self.max_epochs)
            if target != self.epochs:
                log.info(f"Budget: an epoch takes {per_epoch:.1f} s, so the schedule now ends after epoch {target} "
                         f"(planned: {self.epochs}).")
                self.epochs, self._traces = target, True
                self.reschedule(target)
        if self.done >= self.epochs:
            self.model.stop_training = True
        elif self.done >= self.params.get("epochs", self.epochs):
            self.extend = self.model.stop_training = True


class ReportToOptuna(keras.callbacks.Callback):
    """After each epoch: report validation accuracy to the trial; stop training when Optuna prunes it."""

    def __init__(self, trial: Any) -> None:
        super().__init__()
        self.trial = trial
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get("val_accuracy")
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=epoch + 1)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True
