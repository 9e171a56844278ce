"""Out-of-fold probabilities: every image scored by a model that never saw it.

The images are dealt into K folds, stratified by label and with each near-duplicate group whole in one
fold (scikit-learn's ``StratifiedGroupKFold``): a copy of an image in another fold would let the model
that scores it have seen it. Each fold's model trains on the other folds (its own validation split
carved from them, as any run's is) and predicts the fold's images through the same
:class:`~cnnkit.predictor.Predictor` that serving uses, raw pixels in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cnnkit.datasets import Dataset
from cnnkit.errors import ConfigError, DataError
from cnnkit.training.config import TrainConfig

log = logging.getLogger(__name__)

FOLDS_DIR = "folds"  # in the audit folder: one .npz per finished fold, so a killed audit goes on


def group_ids(n: int, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """One id per image: the members of a group share their first member's, every other image has its own.

    Example:
        >>> group_ids(5, [[1, 3]]).tolist()
        [0, 1, 2, 1, 4]
    """
    ids = np.arange(n)
    for group in groups:
        members = [int(i) for i in group]
        ids[members] = min(members)
    return ids


def assign_folds(labels: np.ndarray, folds: int, seed: int, groups: Sequence[Sequence[int]] = (),
                 class_names: Sequence[str] | None = None) -> np.ndarray:
    """The fold (0 to ``folds - 1``) of every image: stratified by label, each group whole, seeded.

    Example:
        >>> np.bincount(assign_folds(np.array([0] * 6 + [1] * 6), 3, seed=0)).tolist()
        [4, 4, 4]
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels)
    if not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"Expected folds to be an integer of at least 2. Received: folds={folds!r}.",
                          "Set folds to 5 (the default) or more.", params="folds")
    counts = np.bincount(labels, minlength=len(class_names) if class_names else 0)
    small = [(int(c), int(n)) for c, n in enumerate(counts) if 0 < n < folds]
    if small:
        name = class_names[small[0][0]] if class_names else str(small[0][0])
        raise DataError(f"Each class needs at least as many images as folds, so that every fold's model has seen "
                        f"it. Received: folds={folds} and class {name!r} with {small[0][1]} image"
                        f"{'s' * (small[0][1] != 1)}" + (f" ({len(small) - 1} more classes too)" if len(small) > 1
                                                         else "") + ".",
                        f"Set folds to {max(2, min(n for _, n in small))} or fewer, or add images to that class.",
                        params="folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = np.full(len(labels), -1, dtype=np.int64)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels, group_ids(len(labels), groups))):
        out[held] = fold
    return out


def fold_dataset(dataset_name: str, x: np.ndarray, y: np.ndarray, held: np.ndarray, class_names: Sequence[str],
                 color_mode: str, resize: str = "stretch") -> Dataset:
    """The dataset of one fold: the other folds to train on, the fold's own images as its test set."""
    return Dataset(name=dataset_name, x_train=x[~held], y_train=y[~held], x_test=x[held], y_test=y[held],
                   class_names=list(class_names), color_mode=color_mode, resize=resize)


def fold_key(x: np.ndarray, y: np.ndarray, folds: np.ndarray, config: TrainConfig) -> str:
    """What a kept fold's probabilities depend on: the pixels, the labels, the folds, the recipe and its schedule."""
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(folds, dtype=np.int64).tobytes())
    digest.update(json.dumps([config.preset.name, config.epochs, config.batch_size, config.learning_rate,
                              config.seed, config.image_size, config.color_mode]).encode())
    return digest.hexdigest()[:16]


def out_of_fold(x: np.ndarray, y: np.ndarray, folds: np.ndarray, config: TrainConfig, *, class_names: Sequence[str],
                color_mode: str, resize: str = "stretch", name: str = "audit",
                on_fold: Callable[[int, float], None] | None = None, keep: Path | None = None) -> np.ndarray:
    """Probabilities ``(n, classes)`` for every image from the model of the folds it is not in.

    ``config``: a resolved recipe with its epochs (:func:`cnnkit.audits.api.audit` plans them from the budget).
    ``on_fold(fold, seconds)`` is called as each fold finishes. ``keep``: a folder where each finished fold's
    probabilities are written (atomically); a fold found there with the same :func:`fold_key` is not trained again.
    """
    import time

    from cnnkit.fileio import atomic_path
    from cnnkit.predictor import Predictor
    from cnnkit.training.config import metadata_for
    from cnnkit.training.fit import fit

    probs = np.zeros((len(y), len(class_names)), dtype=np.float64)
    key = fold_key(x, y, folds, config)
    for fold in range(int(folds.max()) + 1):
        held = folds == fold
        kept = keep / f"fold-{fold}.npz" if keep is not None else None
        if kept is not None and kept.is_file():
            with np.load(kept) as saved:
                if str(saved["key"]) == key:
                    probs[held] = saved["probs"]
                    log.info(f"Fold {fold + 1}: kept from an earlier launch ({kept}).")
                    continue
        start = time.perf_counter()
        dataset = fold_dataset(name, x, y, held, class_names, color_mode, resize)
        fold_config = dataclasses.replace(config, seed=config.seed + fold)
        with tempfile.TemporaryDirectory(prefix="cnnkit-fold-") as scratch:
            fitted = fit(dataset, fold_config, Path(scratch), verbose=0)
        predictor = Predictor(fitted.model, metadata_for(dataset, fold_config), tta=False)
        probs[held] = predictor.predict_proba(x[held])
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(kept) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, probs=probs[held], key=np.array(key))
        from cnnkit._backend import keras

        keras.backend.clear_session()  # K models in one process: keep its memory flat
        if on_fold:
            on_fold(fold, time.perf_counter() - start)
    return probs
