"""``cnnkit audit DATA``: out-of-fold probabilities for every image, confident learning over them, and the findings.

1. **The labelled set**: every usable image (:mod:`cnnkit.audits.labelled`), at the size and colour
   recipe auto would pick, with its near-duplicate groups and the copies whose labels differ.
2. **Folds** (:mod:`cnnkit.audits.folds`): K of them, stratified, near-duplicate groups whole. One
   recipe and one schedule for all K models: the recipe auto picks for the data (``small`` for small
   images, ``photo`` for photos), its epochs planned on the first fold so that the K trainings fill
   the budget (:func:`cnnkit.training.fit.plan_budget` with a K-th of it each).
3. **Findings** (:mod:`cnnkit.audits.confident`): likely label errors, strays no class claims, and the
   pairs of classes most confused; with the conflicts of step 1.
4. **Outputs** (:mod:`cnnkit.audits.outputs`): ``suspects.csv``, ``audit.json`` and ``audit.html`` in
   the audit folder, and a summary with the estimated share of wrong labels in each class.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.audits import DEFAULT_BUDGET_MINUTES, DEFAULT_FOLDS
from cnnkit.audits.confident import find_label_issues
from cnnkit.audits.folds import FOLDS_DIR, assign_folds, fold_dataset, out_of_fold
from cnnkit.audits.labelled import LabelledSet, load_labelled
from cnnkit.audits.outputs import write_outputs
from cnnkit.audits.result import AuditResult
from cnnkit.errors import ConfigError
from cnnkit.progress import reporting
from cnnkit.training.config import TrainConfig

log = logging.getLogger(__name__)


def plan_folds(labelled: LabelledSet, config: TrainConfig, folds: np.ndarray, budget: float) -> TrainConfig:
    """``config`` with the epochs that make the K folds' trainings fill ``budget`` minutes (planned on fold 0)."""
    from cnnkit.training.budget import BudgetTooSmall
    from cnnkit.training.fit import plan_budget

    k = int(folds.max()) + 1
    first = fold_dataset("audit", labelled.x, labelled.y, folds == 0, labelled.class_names, labelled.color_mode,
                         labelled.resize)
    try:
        planned, _ = plan_budget(first, dataclasses.replace(config, budget=budget / k))
    except BudgetTooSmall as small:
        raise ConfigError(f"The budget is too small for {k} folds: each fold's first training step and its "
                          f"validation take about {small.need_seconds:.1f} s on this machine. Received: "
                          f"budget={budget:g} (minutes), {budget / k:.2g} a fold.",
                          f"Set budget to at least {math.ceil(k * small.need_seconds / 6) / 10:g} minutes, or "
                          "fewer folds.", params=("budget", "folds")) from None
    log.info(f"Folds: {k} models of recipe {config.preset.name}, {planned.epochs} epochs each "
             f"({budget:g} min for all, planned on this machine).")
    return dataclasses.replace(planned, budget=None)


def audit(data: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *, folds: int = DEFAULT_FOLDS,
          budget: float = DEFAULT_BUDGET_MINUTES, recipe: str | None = None, epochs: int | None = None,
          seed: int = 0, rank_by: str = "margin", label_regex: str | None = None,
          verbose: int | str = "auto") -> AuditResult:
    """Audit the labels of ``data`` (a folder, a ``.csv`` manifest, an ``.npz`` file or ``"mnist"``) into ``out``.

    ``epochs`` instead of ``budget`` fixes each fold's schedule. ``rank_by``: ``"margin"`` (the normalised
    margin) or ``"self_confidence"``. Each fold's probabilities are kept in ``out`` as it finishes: an audit
    killed midway, run again with the same settings, goes on from the folds it had finished.

    Example:
        >>> result = audit("photos/", "audits/photos")  # doctest: +SKIP
        >>> result.suspects()[0]["path"]  # doctest: +SKIP
        'sunrise/sunrise117.jpg'
    """
    if budget is not None and budget <= 0:
        raise ConfigError(f"Expected budget to be a positive number of minutes. Received: budget={budget!r}.",
                          f"Leave it out for {DEFAULT_BUDGET_MINUTES:g} minutes.", params="budget")
    if rank_by not in ("margin", "self_confidence"):  # before any training, not after it
        raise ConfigError(f"Expected rank_by to be 'margin' or 'self_confidence'. Received: rank_by={rank_by!r}.",
                          params="rank_by")
    start = time.perf_counter()
    data = os.fspath(data)
    out = Path(out) if out is not None else Path("audits") / (Path(data).name or "data")
    config = TrainConfig(data=data, seed=seed, label_regex=label_regex, recipe=recipe, epochs=epochs or 0)
    with reporting(verbose, "cnnkit.audits"), reporting(0):  # the audit's lines, not each fold's training
        chosen, side, colour, given = recipe_for(config)
        labelled = load_labelled(config, chosen, side, colour, given)
        log.info(f"Audit of {labelled.source}: {len(labelled):,} images, {len(labelled.class_names)} classes; "
                 f"recipe {chosen}{f' at {side}x{side}' if side else ''}.")
        fold_of = assign_folds(labelled.y, folds, seed, labelled.groups, labelled.class_names)
        train = dataclasses.replace(config, recipe=chosen, image_size=side, color_mode=colour).resolve()
        if not epochs:
            train = plan_folds(labelled, train, fold_of, budget)

        def said(fold: int, seconds: float) -> None:
            log.info(f"Fold {fold + 1}/{folds}: trained and scored in {seconds:.0f} s.")

        probs = out_of_fold(labelled.x, labelled.y, fold_of, train, class_names=labelled.class_names,
                            color_mode=labelled.color_mode, resize=labelled.resize, on_fold=said,
                            keep=out / FOLDS_DIR)
        findings = find_label_issues(probs, labelled.y, rank_by=rank_by)
        given = str(Path(data).resolve()) if os.path.exists(data) else data
        result = AuditResult(out, given, label_regex, labelled, probs, fold_of, findings, train.preset.name,
                             train.epochs, time.perf_counter() - start)
        write_outputs(result)
        log.info(result.summary())
    return result


def recipe_for(config: TrainConfig) -> tuple[str, int | None, str | None, Any]:
    """The recipe, side and colour mode the folds train at (the user's recipe, or what auto picks, with no
    download), and the data as read for it: the folder inspected, or the arrays loaded (read once)."""
    from cnnkit import datasets
    from cnnkit.training.auto import choose_for_arrays, choose_for_folder

    if config.is_folder:
        from cnnkit.datasets.photos import inspect_folder

        given: Any = inspect_folder(config.data, label_regex=config.label_regex)
    else:
        given = datasets.load(config.data, source=config.data_source)
    if config.recipe not in (None, "auto"):
        return str(config.recipe), None, None, given
    if config.is_folder:
        choice = choose_for_folder(given, dataclasses.replace(config, weights="none"))
    else:
        choice = choose_for_arrays(given)
    return choice.recipe, choice.image_size, choice.color_mode, given
