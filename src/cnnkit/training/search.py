"""Recipe auto's search: candidates tried on the validation split inside the budget, the winner trained after.

Where the base recipe alone would leave most of the budget unused (small images: ``small`` stops at
its 30 epochs, minutes early), and the budget is at least :data:`MIN_SEARCH_SECONDS`, auto spends it
finding a better recipe for the data (:mod:`cnnkit.training.candidates`):

1. **Short trials.** Every candidate trains the same short schedule (:func:`trial_epochs`: a trial
   of the base recipe takes about a twentieth of the budget) on the training split and is scored on
   the validation split; the test set is not touched. Optuna runs the study: the first candidates
   are enqueued, its TPE sampler proposes the rest, and its successive-halving pruner (asynchronous,
   one rung two thirds of the way through a trial) stops a trial that is behind the others there.
2. **The clock.** Trials run while the next one fits before the time kept for the final training
   (:func:`final_reserve`: at most 40 % of the budget, less when the candidate the rule of step 3
   would choose now needs less to run its longest schedule), so the budget is spent rather than left over.
3. **The choice.** Of the completed trials, the simplest (:func:`~cnnkit.training.candidates.complexity`)
   whose validation accuracy is within one standard error of the best one's wins (Breiman's
   one-standard-error rule): with ``n`` validation images the error of an accuracy ``p`` is
   ``sqrt(p (1 - p) / n)``, so 110 photos cannot separate candidates a point apart and the simpler
   one is kept, and said so.

The study lives in the run folder (``search.log``, Optuna's journal storage), so ``--resume`` of a
run killed during its search goes on with it: finished trials are kept and a trial cut short is
tried again. The leaderboard is printed, kept in ``config.json`` and shown in ``report.html``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.datasets import Dataset
from cnnkit.errors import CnnkitError
from cnnkit.presets import Preset
from cnnkit.training import candidates
from cnnkit.training.config import TrainConfig

log = logging.getLogger(__name__)

JOURNAL = "search.log"  # the study, in the run folder
FINAL_SHARE = 0.4  # the most of the budget kept for training the winner
TRIAL_SHARE = 1 / 20  # a trial of the base recipe takes about this share of the budget
TRIAL_EPOCHS = (3, 20)  # ... in this many epochs at least and at most
REDUCTION = 3  # successive halving keeps a third of the trials at each rung
# A shorter budget is not searched: on any machine it holds a trial or two besides the time kept for the winner,
# too few to compare candidates (and a 12-s budget once left the winner 3 s after its one trial).
MIN_SEARCH_SECONDS = 30.0


@dataclass
class Entry:
    """One row of the leaderboard: a candidate, what it scored on validation, and what it cost."""

    number: int
    values: dict[str, Any]
    state: str  # "complete", "pruned" or "failed"
    val_accuracy: float | None
    standard_error: float | None
    epochs: int
    seconds: float  # the whole trial: the model built and traced, its epochs, their validation
    params: int
    epoch_seconds: float = 0.0  # one epoch, the median of the trial's (what the winner's training will take)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    """The search's outcome: the winning recipe, why it won, and every candidate tried."""

    winner: Preset
    number: int
    reason: str
    entries: list[Entry]
    trial_epochs: int
    seconds: float
    validation_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """config.json's ``search`` section."""
        return {"done": True, "winner": self.number, "reason": self.reason, "trial_epochs": self.trial_epochs,
                "seconds": round(self.seconds, 1), "validation_images": self.validation_images,
                "rule": "the simplest completed candidate within one standard error of the best validation accuracy",
                "leaderboard": [entry.to_dict() for entry in self.entries], **self.extra}

    def least_final_seconds(self) -> float:
        """The least the winner's training takes: its trial's start (model built and traced) and one epoch, with
        the planner's margin (:data:`cnnkit.training.budget.MARGIN`)."""
        from cnnkit.training.budget import MARGIN

        entry = next(e for e in self.entries if e.number == self.number)
        one_epoch = entry.seconds - max(entry.epochs - 1, 0) * entry.epoch_seconds
        return max(one_epoch, entry.epoch_seconds) / MARGIN

    def table(self) -> str:
        """The leaderboard as text, best first."""
        return leaderboard_text([entry.to_dict() for entry in self.entries], self.number)


def leaderboard_text(rows: list[dict[str, Any]], winner: int | None) -> str:
    """Leaderboard rows (:meth:`Entry.to_dict`) as an aligned table, best validation accuracy first."""
    ranked = sorted(rows, key=lambda r: (r["val_accuracy"] is None, -(r["val_accuracy"] or 0.0), r["number"]))
    lines = [f"{'':2}{'#':>3} {'validation':>10} {'± SE':>6} {'epochs':>6} {'seconds':>7} {'params':>9}  "
             f"{'state':<8} settings"]
    for r in ranked:
        accuracy = f"{r['val_accuracy']:.2%}" if r["val_accuracy"] is not None else "–"
        error = f"{r['standard_error']:.2%}" if r["standard_error"] is not None else "–"
        settings = ", ".join(f"{k} {v}" for k, v in r["values"].items())
        lines.append(f"{'*' if r['number'] == winner else '':2}{r['number']:>3} {accuracy:>10} {error:>6} "
                     f"{r['epochs']:>6} {r['seconds']:>7.1f} {r['params']:>9,}  {r['state']:<8} {settings}")
    return "\n".join(lines)


def standard_error(accuracy: float, n: int) -> float:
    """The standard error of an accuracy measured on ``n`` images (binomial).

    Example:
        >>> round(standard_error(0.9, 100), 3)
        0.03
    """
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(n, 1))


def choose(entries: list[Entry]) -> tuple[Entry, str]:
    """The winner by the one-standard-error rule, and the sentence that says why."""
    done = [e for e in entries if e.state == "complete" and e.val_accuracy is not None]
    if not done:
        raise ValueError("No candidate completed its trial.")
    best = max(done, key=lambda e: (e.val_accuracy, -e.number))
    assert best.val_accuracy is not None and best.standard_error is not None  # complete entries have both
    floor = best.val_accuracy - best.standard_error
    close = [e for e in done if e.val_accuracy is not None and e.val_accuracy >= floor]
    simplest = min(close, key=lambda e: (candidates.complexity(e.values), e.number))
    if simplest is best:
        return best, f"#{best.number} has the best validation accuracy ({best.val_accuracy:.2%})"
    return simplest, (f"#{simplest.number} ({simplest.val_accuracy:.2%}) is within one standard error "
                      f"({best.standard_error:.2%}) of the best, #{best.number} ({best.val_accuracy:.2%}), and simpler")


def trial_epochs(epoch_seconds: float, budget_seconds: float) -> int:
    """The epochs of every trial: a base-recipe trial takes about :data:`TRIAL_SHARE` of the budget.

    Example:
        >>> trial_epochs(epoch_seconds=9.0, budget_seconds=900)
        5
    """
    epochs = math.floor(TRIAL_SHARE * budget_seconds / max(epoch_seconds, 1e-3))
    return max(TRIAL_EPOCHS[0], min(TRIAL_EPOCHS[1], epochs))


def final_reserve(budget_seconds: float, best_epoch_seconds: float | None, max_epochs: int) -> float:
    """Seconds kept for training the winner: :data:`FINAL_SHARE` of the budget, or what its longest schedule needs.

    Example:
        >>> final_reserve(900, best_epoch_seconds=0.5, max_epochs=80)
        44.0
    """
    if best_epoch_seconds is None:
        return FINAL_SHARE * budget_seconds
    return min(FINAL_SHARE * budget_seconds, 1.1 * best_epoch_seconds * max_epochs)


def time_to_stop(entries: list[Entry], elapsed: float, budget_seconds: float) -> bool:
    """Whether the search ends here: another trial, as long as the median finished one, would run into the time
    kept for the winner (:func:`final_reserve`). Until one trial has finished, it goes on.

    The time kept is what the candidate that would win now needs, by the rule that will choose it (:func:`choose`:
    the simplest within one standard error of the best), which is often cheaper than the best: weather32 seed 6
    kept the best's 234 s for a winner whose 80 epochs took 107 s, and used 76.7 % of its budget.
    """
    full = sorted(e.seconds for e in entries if e.state == "complete")
    if not full:
        return False
    leader = choose(entries)[0]
    reserve = final_reserve(budget_seconds, leader.epoch_seconds or leader.seconds / max(leader.epochs, 1),
                            candidates.MAX_EPOCHS)
    return elapsed + full[len(full) // 2] > budget_seconds * 0.95 - reserve


def import_optuna() -> Any:
    """Optuna, with its "experimental" warnings for the journal storage and heartbeats silenced."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial from cnnkit, not from Optuna
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_study(run_dir: Path, seed: int, epochs: int) -> Any:
    """The run folder's study (created, or loaded to go on with it); a trial cut short by a kill is tried again.

    Trials of ``epochs`` epochs are compared at one rung, two thirds of the way (successive halving with
    :data:`REDUCTION`, whose next rung lies past the trial's end): a larger or more regularised candidate,
    which learns more slowly at first and gains most as its learning rate decays, is not judged early.
    """
    optuna = import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(run_dir / JOURNAL)))
    study = optuna.create_study(
        study_name="auto", storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=len(candidates.first_candidates())),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, math.ceil(2 * epochs / 3)),
                                                      reduction_factor=REDUCTION))
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # killed with its process
        values = trial.params or trial.system_attrs.get("fixed_params", {})  # killed before it drew them
        study.enqueue_trial(values, user_attrs={"retry_of": trial.number})
    if not study.trials:
        study.set_user_attr("trial_epochs", epochs)
        for values in candidates.first_candidates():
            study.enqueue_trial(values)
    return study


def entries_of(study: Any, validation_images: int) -> list[Entry]:
    """The leaderboard rows of ``study``'s finished trials."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name.lower()
        if state not in ("complete", "pruned", "fail"):
            continue
        value = trial.value if state == "complete" else trial.user_attrs.get("val_accuracy")
        rows.append(Entry(trial.number, dict(trial.params), "failed" if state == "fail" else state, value,
                          standard_error(value, validation_images) if value is not None else None,
                          int(trial.user_attrs.get("epochs", 0)), float(trial.user_attrs.get("seconds", 0.0)),
                          int(trial.user_attrs.get("params", 0)), float(trial.user_attrs.get("epoch_seconds", 0.0))))
    return rows


def can_search(config: TrainConfig) -> bool:
    """Whether auto has a space of candidates for ``config``'s recipe (:data:`~cnnkit.training.candidates.SEARCHABLE`),
    and the run is one process (the processes of a data-parallel run would each search)."""
    return config.preset.name in candidates.SEARCHABLE and not config.distribute


def base_plan(config: TrainConfig, dataset: Dataset, budget_seconds: float) -> Any:
    """What the budget buys the base recipe alone, measured here (:func:`cnnkit.training.fit.plan_budget`)."""
    from cnnkit.training.fit import plan_budget

    return plan_budget(dataset, dataclasses.replace(config, budget=budget_seconds / 60))[1]


def worth_searching(plan: Any, preset: Preset, budget_seconds: float) -> bool:
    """Whether the base recipe leaves most of the budget unused (its longest schedule takes less than half of it),
    in a budget of at least :data:`MIN_SEARCH_SECONDS`.

    Where it does not (photos at their side, a short ``--budget``), the budget buys the base recipe's epochs.

    Example:
        >>> from types import SimpleNamespace
        >>> plan = SimpleNamespace(epochs=30, start_seconds=1.0, epoch_seconds=0.1)
        >>> small = SimpleNamespace(max_epochs=0, epochs=30)
        >>> worth_searching(plan, small, 900), worth_searching(plan, small, 12)
        (True, False)
    """
    longest = preset.max_epochs or preset.epochs
    return (budget_seconds >= MIN_SEARCH_SECONDS and plan.epochs >= longest
            and plan.start_seconds + longest * plan.epoch_seconds < 0.5 * budget_seconds)


def search(config: TrainConfig, dataset: Dataset, run_dir: Path, *, budget_seconds: float,
           epoch_seconds: float, validation_images: int) -> SearchResult:
    """Run (or go on with) the search for ``config``'s data in ``run_dir``; return the winner and the leaderboard.

    ``epoch_seconds``: an epoch of the base recipe here (:func:`base_plan`), which sets the trials' length.
    """
    optuna = import_optuna()
    from cnnkit._backend import keras
    from cnnkit.progress import reporting
    from cnnkit.training.callbacks import ReportToOptuna
    from cnnkit.training.fit import fit

    study = open_study(run_dir, config.seed, trial_epochs(epoch_seconds, budget_seconds))
    epochs = int(study.user_attrs["trial_epochs"])
    height, width, channels = dataset.input_shape
    base, shape = config.preset, (int(height), int(width), int(channels))
    spent = sum(float(t.user_attrs.get("seconds", 0.0)) for t in study.trials)  # a resumed search's trials

    def objective(trial: Any) -> float:
        values = candidates.suggest(trial)
        preset = candidates.small_candidate(base, values, shape, f"{base.name}-auto-{trial.number}")
        trial_config = dataclasses.replace(config, recipe=preset, epochs=epochs, budget=None, batch_size=0,
                                           learning_rate=0.0).resolve()
        report = ReportToOptuna(trial)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cnnkit-candidate-") as scratch, reporting(0):
            fitted = fit(dataset, trial_config, Path(scratch), verbose=0, callbacks=[report])
        seconds = time.perf_counter() - start
        value, done = float(fitted.history["val_accuracy"][-1]), len(fitted.history["loss"])
        per_epoch = sorted(fitted.history.get("epoch_seconds", [seconds / max(done, 1)]))
        for key, item in (("seconds", round(seconds, 2)), ("epochs", done), ("val_accuracy", value),
                          ("params", int(fitted.model.count_params())),
                          ("epoch_seconds", round(per_epoch[len(per_epoch) // 2], 3))):
            trial.set_user_attr(key, item)
        keras.backend.clear_session()  # many models in one process: keep its memory flat
        what = f"#{trial.number} ({', '.join(f'{k} {v}' for k, v in values.items())})"
        if report.pruned_at is not None:
            log.info(f"Search {what}: validation {value:.2%} after epoch {done}, behind at its rung: pruned "
                     f"({seconds:.0f} s).")
            raise optuna.TrialPruned()
        log.info(f"Search {what}: validation {value:.2%} after {done} epochs ({seconds:.0f} s).")
        return value

    start = time.perf_counter()
    log.info(f"Search: candidates train {epochs} epochs each on the training split, scored on the "
             f"{validation_images:,} validation images, until the time kept for the winner.")
    while True:
        entries = entries_of(study, validation_images)
        elapsed = spent + time.perf_counter() - start
        if time_to_stop(entries, elapsed, budget_seconds):
            break
        study.optimize(objective, n_trials=1, catch=(CnnkitError,))
    entries = entries_of(study, validation_images)
    winner, reason = choose(entries)
    preset = candidates.small_candidate(base, winner.values, shape, f"{base.name}-auto")
    return SearchResult(dataclasses.replace(preset, params=winner.params or preset.params), winner.number, reason,
                        entries, epochs, spent + time.perf_counter() - start, validation_images)
