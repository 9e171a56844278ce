"""A time budget: measure the first steps, then plan the epochs so the whole schedule ends inside it.

``--budget MINUTES`` is a plan, not a stop: a throwaway copy of the model trains a few batches to
measure the time of a step, of validation and of a checkpoint on this machine, and the epoch count
is set so that every epoch, with its learning-rate schedule run to its end, fits the budget
(:func:`plan`). A budget shorter than one epoch plans one shorter epoch. The plan is printed and
recorded in ``config.json`` (its epochs and steps become the run's, so ``--resume`` continues the
same schedule). ``--max-minutes`` stays what it was: a hard stop at an epoch boundary.

A few probe steps misjudge a whole run (a machine's speed drifts, and the first steps of a process
are slower or faster than the rest), so the plan is kept at every epoch's end: :func:`replan` looks
at the epochs run so far and moves the schedule's end (:class:`cnnkit.training.callbacks.BudgetKeeper`)
when more epochs fit or fewer do.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import ConfigError

# Planned epochs are kept this far inside the budget: the measurement is of a few steps, and a
# machine's speed drifts by a few per cent from minute to minute (benchmarks/RESULTS.md).
MARGIN = 0.95
PROBE_STEPS = 8  # timed training steps, in two halves (after the untimed ones that trace and compile)


@dataclass(frozen=True)
class Plan:
    """What a budget buys on this machine: the epochs, and what they were planned from."""

    budget_seconds: float
    epochs: int
    steps_per_epoch: int
    step_seconds: float  # one training step
    epoch_seconds: float  # an epoch of steps_per_epoch, with validation and its checkpoint
    batch_size: int
    start_seconds: float = 0.0  # once per run: tracing and compiling the train and test steps

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.step_seconds if self.step_seconds else float("inf")

    def line(self, now: datetime.datetime | None = None) -> str:
        """One line for the console: the plan and when training should end."""
        end = (now or datetime.datetime.now()) + datetime.timedelta(
            seconds=self.start_seconds + self.epochs * self.epoch_seconds)
        return (f"Budget {self.budget_seconds / 60:.3g} min: {self.epochs} epoch{'s' if self.epochs != 1 else ''} of "
                f"{self.steps_per_epoch} steps, about {self.epoch_seconds:.1f} s each "
                f"({self.images_per_second:,.0f} images/s in training); the schedule ends by {end:%H:%M:%S}.")

    def to_dict(self) -> dict[str, Any]:
        """The plan's figures for config.json."""
        return {**dataclasses.asdict(self), "images_per_second": round(self.images_per_second, 1)}


class BudgetTooSmall(ConfigError):
    """A budget that holds no training step: ``need_seconds`` is the least one step and its validation take."""

    def __init__(self, message: str, hint: str, need_seconds: float) -> None:
        super().__init__(message, hint, params="budget")
        self.need_seconds = need_seconds


def plan(budget_seconds: float, *, step_seconds: float, steps_per_epoch: int, val_seconds: float,
         checkpoint_seconds: float, batch_size: int, max_epochs: int, start_seconds: float = 0.0) -> Plan:
    """The most epochs (at most ``max_epochs``) whose whole schedule fits ``budget_seconds`` (times :data:`MARGIN`).

    ``start_seconds`` is paid once (tracing the train and test steps), before the first epoch.

    A budget that holds less than one epoch plans one epoch of fewer steps; one that holds less
    than one step is a ConfigError.

    Example:
        >>> plan(60, step_seconds=0.1, steps_per_epoch=100, val_seconds=2, checkpoint_seconds=1,
        ...      batch_size=32, max_epochs=50).epochs
        4
    """
    usable = budget_seconds * MARGIN - start_seconds
    epoch = step_seconds * steps_per_epoch + val_seconds + checkpoint_seconds
    if usable >= epoch:
        return Plan(budget_seconds, max(1, min(max_epochs, math.floor(usable / epoch + 1e-9))), steps_per_epoch,
                    step_seconds, epoch, batch_size, start_seconds)
    steps = math.floor((usable - val_seconds - checkpoint_seconds) / step_seconds + 1e-9) if step_seconds else 0
    if steps < 1:
        need = (start_seconds + step_seconds + val_seconds + checkpoint_seconds) / MARGIN
        raise BudgetTooSmall(f"The budget is too small for one training step and its validation on this machine: "
                             f"they take about {need:.1f} s. Received: budget={budget_seconds / 60:g} (minutes).",
                             f"Set budget to at least {math.ceil(need / 6) / 10:g} minutes.", need)
    return Plan(budget_seconds, 1, steps, step_seconds, step_seconds * steps + val_seconds + checkpoint_seconds,
                batch_size, start_seconds)


def replan(*, elapsed: float, done: int, target: int, epoch_seconds: float, budget_seconds: float,
           max_epochs: int) -> int:
    """The epochs the schedule should end after, seen from the end of epoch ``done`` of ``target`` planned.

    ``elapsed`` seconds of the budget are spent; an epoch now takes ``epoch_seconds``. The plan grows
    to the epochs that fit within :data:`MARGIN` of the budget (at most ``max_epochs``), and shrinks
    to them when the planned epochs would end past the budget itself. Either move must be worth at
    least a tenth of the epochs still to run (and one epoch): an epoch's time is measured to a few
    per cent, and that error, times the epochs left, must not move the schedule back and forth.

    Example:
        >>> replan(elapsed=30, done=3, target=10, epoch_seconds=8, budget_seconds=120, max_epochs=50)
        13
    """
    if epoch_seconds <= 0:
        return target
    fits = done + max(0, math.floor((budget_seconds * MARGIN - elapsed) / epoch_seconds + 1e-9))
    ceiling = done + max(0, math.floor((budget_seconds - elapsed) / epoch_seconds + 1e-9))
    tolerance = max(1, math.ceil(0.1 * (target - done)))
    if fits - target >= tolerance:
        return min(max(target, max_epochs), fits)
    if target - ceiling >= tolerance:
        return max(done, fits)
    return target


def measure(model: Any, train: dict[str, Any], validation: Any, *, batch_size: int, steps_per_execution: int,
            clock: Callable[[], float] = time.perf_counter) -> tuple[float, float, float, float]:
    """Seconds of one training step, of validating one batch, of one checkpoint, and of the first calls
    (tracing and compiling the train and test steps, paid once per run), on ``model``.

    ``train`` holds ``model.fit``'s data arguments, ``validation`` its validation data (a dataset, or
    an ``(x, y)`` pair); the model's weights change (use a throwaway one).
    """
    steps = max(PROBE_STEPS, steps_per_execution) // steps_per_execution * steps_per_execution
    warm = 2 * steps_per_execution
    try:  # a feed that does not repeat (a folder read from the cache) holds this many batches
        available = len(train["x"])
    except TypeError:  # endless, or a generator
        available = None
    if available is not None:
        steps, warm = max(1, min(steps, available - warm)), min(warm, max(1, available // 2))
    data = {k: v for k, v in train.items() if k not in ("validation_data", "validation_batch_size")}
    start = clock()
    model.fit(**data, epochs=1, steps_per_epoch=warm, verbose=0)  # trace and compile
    first = clock() - start
    # Two timed halves, the faster kept (as timeit does): another process's burst during one of them says
    # nothing about this run's steps, and auto's choice of side rests on this figure.
    half = steps // 2 // steps_per_execution * steps_per_execution or max(1, steps // 2)
    spans = []
    for _ in range(2):
        start = clock()
        model.fit(**data, epochs=1, steps_per_epoch=half, verbose=0)
        spans.append((clock() - start) / half)
    step = min(spans)
    pair = validation if isinstance(validation, tuple) else (validation,)
    evaluate = {"batch_size": batch_size} if isinstance(validation, tuple) else {}
    start = clock()
    model.evaluate(*pair, steps=1, verbose=0, **evaluate)  # trace the test function
    first += clock() - start
    start = clock()
    model.evaluate(*pair, steps=2, verbose=0, **evaluate)
    val_batch = (clock() - start) / 2
    with tempfile.TemporaryDirectory(prefix="cnnkit-budget-") as tmp:
        start = clock()
        model.save(Path(tmp) / "probe.keras")
        save = clock() - start
    return step, val_batch, save, max(0.0, first - warm * step)


def planned(config: Any, plan_: Plan) -> Any:
    """``config`` with the plan's epochs (and steps, when one short epoch was planned) and without its budget."""
    steps = plan_.steps_per_epoch if plan_.epochs == 1 and plan_.step_seconds else None
    return dataclasses.replace(config, epochs=plan_.epochs, steps_per_epoch=steps or config.steps_per_epoch)
