"""The learning-rate range test (Leslie Smith's; fastai's ``lr_find``): which peak learning rate suits a recipe here.

A throwaway copy of the recipe's model trains for a few hundred batches of the training split (never
the validation or test images), through the feed training uses (:func:`cnnkit.training.inputs.fit_inputs`:
the same pixels, augmentation and preprocessing), with the recipe's own optimizer at a learning rate
that rises exponentially from ``start_lr`` to ``end_lr``, one value per batch. Each batch's loss is
recorded and smoothed as fastai smooths it (:func:`smooth`); the test stops early when the smoothed
loss passes :data:`DIVERGED` times its minimum, or is not a number.

Two learning rates are read off the smoothed curve, less its first tenth and its last
:data:`SKIP_END` points, as fastai reads it (:func:`suggest`):

- **valley** (fastai's default, and ``suggestion``): a third to a half of the way down the longest
  run of ever-lower losses (:func:`valley`);
- **steepest**: where the loss falls fastest against the logarithm of the learning rate (:func:`steepest`).

Keras loads only inside :func:`lr_find`: the command line's parser reads this module's defaults.

Example:
    >>> result = lr_find(TrainConfig(data="photos/"), "runs/lr")  # doctest: +SKIP
    >>> result.suggestion, result.steepest  # doctest: +SKIP
    (0.0021, 0.0063)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cnnkit.errors import ConfigError, DataError
from cnnkit.fileio import write_json
from cnnkit.progress import live, reporting
from cnnkit.training.config import TrainConfig

log = logging.getLogger(__name__)

START_LR, END_LR = 1e-7, 10.0  # fastai's range: from no learning at all to certain divergence
DEFAULT_STEPS = 200  # 8 decades at 25 batches each
FEW_EPOCHS = 5  # ...but no more passes over the training split than this: the curve should show the rate, not
MIN_DEFAULT_STEPS = 50  # memorised images; and, on data of a batch or two, enough points to draw a curve
MIN_STEPS = 10
BETA = 0.98  # fastai's smoothing
DIVERGED = 4.0  # fastai's stop: the smoothed loss at 4 times its minimum
SKIP_END = 5  # fastai leaves the last 5 points out of the suggestions: the divergence itself
FIGURE, RECORD = "lr_find.png", "lr_find.json"


@dataclass(frozen=True, repr=False)
class LRFindResult:
    """What a range test tried and measured, and the learning rates it suggests.

    ``lrs``, ``losses`` (each batch's) and ``smoothed`` have one value per step run; ``steps`` is the
    number planned (more than were run when the loss diverged). ``learning_rate`` is the peak rate the
    config trains at (the recipe's unless set), for comparison.
    """

    recipe: str
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    valley: float
    steepest: float
    start_lr: float
    end_lr: float
    steps: int
    diverged: bool
    learning_rate: float
    out: Path | None = None

    @property
    def suggestion(self) -> float:
        """The learning rate to train at: the valley's."""
        return self.valley

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (``lr_find.json``); a loss that was not a number is ``None``."""
        def numbers(values: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in values]

        return {"recipe": self.recipe, "suggestion": self.suggestion, "valley": self.valley, "steepest": self.steepest,
                "learning_rate": self.learning_rate, "start_lr": self.start_lr, "end_lr": self.end_lr,
                "steps": self.steps, "steps_run": len(self.lrs), "diverged": self.diverged,
                "lrs": numbers(self.lrs), "losses": numbers(self.losses), "smoothed": numbers(self.smoothed)}

    def __repr__(self) -> str:
        stop = ", diverged" if self.diverged else ""
        return (f"LRFindResult(recipe={self.recipe!r}, suggestion={self.valley:.3g}, steepest={self.steepest:.3g}, "
                f"steps={len(self.lrs)}/{self.steps}{stop})")


def smooth(losses: ArrayLike, beta: float = BETA) -> np.ndarray:
    """fastai's smoothed loss: an exponential moving average of ``losses``, divided by ``1 - beta**n`` so that
    its first values are not pulled towards 0.

    Example:
        >>> smooth([2.0, 2.0, 2.0]).round(6).tolist()
        [2.0, 2.0, 2.0]
    """
    values = np.asarray(losses, dtype=float)
    out, mean = np.empty(len(values)), 0.0
    for i, loss in enumerate(values):
        mean = beta * mean + (1 - beta) * float(loss)
        out[i] = mean / (1 - beta ** (i + 1))
    return out


def valley(lrs: ArrayLike, losses: ArrayLike) -> float:
    """fastai's ``valley``: the learning rate part-way down the longest run of ever-lower ``losses``.

    The run is the longest chain of points each lower than the one before (a decreasing subsequence,
    so noise does not cut it short). Of a run of length *L* ending at index *e*, fastai takes index
    ``e - L + int(L/3) + int(L/6)``: its documentation says "roughly 2/3 through the longest valley",
    its arithmetic lands a third (short runs) to a half (long ones) of the way down; this is its
    arithmetic, so the numbers agree with fastai's. A curve that never falls gives the first rate
    (fastai's would give the last).

    Example:
        >>> valley(range(12), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 4, 8])  # falls from index 0 to 9
        3.0
    """
    rates, values = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    run = np.ones(len(values), dtype=int)  # run[i]: the longest chain of ever-lower losses ending at i
    for i in range(1, len(values)):
        higher = values[:i] > values[i]
        if higher.any():
            run[i] = run[:i][higher].max() + 1
    end = int(np.argmax(run))  # the first of the longest
    length = int(run[end])
    return float(rates[max(0, end - length + int(length / 3) + int(length / 6))])


def steepest(lrs: ArrayLike, losses: ArrayLike) -> float:
    """fastai's ``steep``: the learning rate where ``losses`` fall fastest against ``log(lr)`` (the left end of
    the steepest segment).

    Example:
        >>> steepest([1, 10, 100, 1000], [3.0, 2.9, 1.0, 0.9])
        10.0
    """
    rates, values = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if len(values) < 2:
        return float(rates[0])
    return float(rates[int(np.argmin(np.diff(values) / np.diff(np.log(rates))))])


def suggest(lrs: ArrayLike, smoothed: ArrayLike, steps: int) -> tuple[float, float]:
    """The valley and the steepest learning rate of a range test of ``steps`` planned steps.

    As fastai does: the curve up to its first value that is not a number, less its first tenth (of
    ``steps``) and its last :data:`SKIP_END` points. A test that diverged at once keeps what it has.
    """
    rates, values = np.asarray(lrs, dtype=float), np.asarray(smoothed, dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    end = int(bad[0]) if bad.size else len(values)
    if end == 0:
        raise DataError(f"The loss was not a number from the first step. Received: start_lr={rates[0]:g}.",
                        "Check the data (labels, pixel values), or lower start_lr.", params="start_lr")
    low, high = steps // 10, end - SKIP_END
    if high - low < 3:
        low, high = 0, end
    return valley(rates[low:high], values[low:high]), steepest(rates[low:high], values[low:high])


def default_steps(batches_per_epoch: int) -> int:
    """The steps of a range test on a training split of ``batches_per_epoch`` batches."""
    return min(DEFAULT_STEPS, max(MIN_DEFAULT_STEPS, FEW_EPOCHS * batches_per_epoch))


class Sweep:
    """One range test's schedule and record: the rate of each step, each batch's loss, when to stop."""

    def __init__(self, start_lr: float, end_lr: float, steps: int) -> None:
        self.planned = start_lr * (end_lr / start_lr) ** (np.arange(steps) / (steps - 1))
        self.losses: list[float] = []
        self.diverged = False
        self._mean, self._best = 0.0, math.inf

    def lr(self) -> float:
        """The learning rate of the next step."""
        return float(self.planned[len(self.losses)])

    def record(self, loss: float) -> bool:
        """Record a batch's loss; ``True`` when the test is over (every step run, or the loss diverged)."""
        self.losses.append(loss)
        self._mean = BETA * self._mean + (1 - BETA) * loss
        smoothed = self._mean / (1 - BETA ** len(self.losses))
        self._best = min(self._best, smoothed)
        self.diverged = not math.isfinite(smoothed) or smoothed > DIVERGED * self._best
        return self.diverged or len(self.losses) == len(self.planned)


def lr_find(config: TrainConfig, out: str | Path | None = None, *, start_lr: float = START_LR, end_lr: float = END_LR,
            steps: int | None = None, verbose: int | str = "auto") -> LRFindResult:
    """Train a throwaway model of ``config``'s recipe with a learning rate rising from ``start_lr`` to ``end_lr``.

    ``config`` is resolved as :func:`cnnkit.training.run.train` resolves it (recipe auto chooses from
    the data). ``steps`` batches (default: :data:`DEFAULT_STEPS`, no more than :data:`FEW_EPOCHS`
    passes over the training split, at least :data:`MIN_DEFAULT_STEPS`). With ``out`` (a folder),
    ``lr_find.png`` (loss against learning rate, the suggestions marked) and ``lr_find.json`` go there.
    ``verbose`` is :func:`~cnnkit.training.run.train`'s: 0 prints nothing.
    """
    checks = [(start_lr > 0, "start_lr", "start_lr > 0", f"start_lr={start_lr!r}"),
              (math.isfinite(end_lr) and end_lr > start_lr, "end_lr", "end_lr > start_lr",
               f"end_lr={end_lr!r}, start_lr={start_lr!r}"),
              (steps is None or steps >= MIN_STEPS, "steps", f"steps ≥ {MIN_STEPS}", f"steps={steps!r}")]
    for ok, name, expected, received in checks:
        if not ok:
            raise ConfigError(f"Expected {expected}. Received: {received}.",
                              f"Set {name} so that {expected} (the default range is {START_LR:g} to {END_LR:g}).",
                              params=name)
    with reporting(verbose):
        return _lr_find(config, None if out is None else Path(out), start_lr, end_lr, steps, verbose)


def _lr_find(config: TrainConfig, out: Path | None, start_lr: float, end_lr: float, steps: int | None,
             verbose: int | str) -> LRFindResult:
    """:func:`lr_find`, its arguments checked and its lines governed by ``verbose``."""
    from cnnkit._backend import keras
    from cnnkit.models import build_model
    from cnnkit.plots import plot_lr_find
    from cnnkit.training.auto import prepare
    from cnnkit.training.balance import class_weights
    from cnnkit.training.fit import compile_model, split_dataset
    from cnnkit.training.inputs import fit_inputs

    config, dataset, choice = prepare(config)
    preset = config.preset
    if preset.backbone:
        raise ConfigError(f"Expected a recipe without a pretrained backbone: recipe {preset.name}'s head trains on "
                          f"cached, standardised features, which a range test does not reproduce. Received: "
                          f"recipe={preset.name!r}, backbone={preset.backbone!r}.",
                          "Choose another recipe (small, photo), or leave out backbone.", params=("recipe", "backbone"))
    # Auto's line ends with the budget train would plan; a range test plans none.
    log.info(re.sub(r"; budget [\d.]+ min\.$", ".", choice) or f"Recipe {preset.name}.")
    config = dataclasses.replace(config, steps_per_epoch=None)  # the feed in passes of the data, however many
    split = split_dataset(dataset, config)
    batches = math.ceil(len(split.x_train) / config.batch_size)
    steps = steps or default_steps(batches)
    weights, _ = class_weights(config.class_weight, split.y_train, dataset.class_names)
    log.info(f"Learning-rate range test: {steps} steps from {start_lr:g} to {end_lr:g} (batches of {config.batch_size} "
             f"from {len(split.x_train):,} training images, {steps / batches:.1f} passes).")

    keras.utils.set_random_seed(config.seed)
    model = build_model(preset, input_shape=dataset.input_shape, num_classes=dataset.num_classes,
                        precision=config.precision or "float32")
    # The recipe's optimizer at a constant rate the sweep can set, one step per call so it sees every batch.
    compile_model(model, dataclasses.replace(preset, steps_per_execution=1),
                  dataclasses.replace(config, learning_rate=start_lr, schedule="constant"), batches)
    sweep = Sweep(start_lr, end_lr, steps)
    inputs, feed_callbacks = fit_inputs(split, config)
    inputs = {key: value for key, value in inputs.items() if not key.startswith("validation")}  # training split only
    level = 1 if verbose == 1 or (verbose == "auto" and live()) else 0  # a bar, never lines per pass
    model.fit(**inputs, epochs=math.ceil(steps / batches), class_weight=weights, verbose=level,
              callbacks=[*feed_callbacks, _sweeping(keras, sweep)])

    losses = np.asarray(sweep.losses, dtype=float)
    lrs, smoothed = sweep.planned[:len(losses)], smooth(losses)
    if sweep.diverged:
        log.info(f"Stopped after {len(losses)} of {steps} steps: the loss diverged at learning rate {lrs[-1]:.2g}.")
    low, fast = suggest(lrs, smoothed, steps)
    result = LRFindResult(preset.name, lrs, losses, smoothed, low, fast, start_lr, end_lr, steps, sweep.diverged,
                          config.learning_rate, out)
    log.info(f"Suggested learning rate: {low:.2e} (valley); the loss falls fastest at {fast:.2e}; recipe "
             f"{preset.name} trains at {config.learning_rate:.2e}.")
    if out is not None:
        plot_lr_find(lrs, losses, smoothed, {"valley": low, "steepest": fast}, out / FIGURE,
                     title=f"Learning-rate range test, recipe {preset.name}")
        write_json(out / RECORD, result.to_dict())
    return result


def _sweeping(keras: Any, sweep: Sweep) -> Any:
    """The Keras callback that runs ``sweep``: each batch's learning rate before it, its loss after it."""

    class Sweeping(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            model = self.model  # on JAX, reading it puts the training state back into the model for these changes
            model.optimizer.learning_rate = sweep.lr()
            model.reset_metrics()  # Keras logs the epoch's running mean: from here on, this batch's loss alone

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if sweep.record(float((logs or {})["loss"])):
                self.model.stop_training = True

    return Sweeping()
