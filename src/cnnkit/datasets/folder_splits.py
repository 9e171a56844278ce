"""Split an image-folder index into train/val/test: stratified, seeded, honouring pre-split folders.

Example:
    >>> splits = split_index(index_folder("photos/"), val_fraction=0.1, test_fraction=0.2)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.datasets.folder import FolderIndex
from cnnkit.datasets.splits import stratified_sample, stratified_split
from cnnkit.errors import ConfigError, DataError


@dataclass(eq=False)
class FolderSplits:
    """Sorted, disjoint index arrays into :attr:`FolderIndex.paths`; ``notes`` says what was carved."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    notes: list[str] = field(default_factory=list)


def split_index(
    index: FolderIndex, *, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
    train_per_class: int | None = None, groups: Sequence[Sequence[int]] = (),
) -> FolderSplits:
    """Split an index into train/val/test, stratified by class and seeded.

    * Unsplit folder: ``test_fraction`` of each class goes to test, then ``val_fraction``
      (of the whole) to val, the rest to train.
    * Pre-split folder: its ``train/``, ``val/``, ``test/`` are used as they are; a missing
      ``val/`` (or ``test/``) is carved from ``train/`` with the fractions, as noted in ``notes``.
    * ``train_per_class=N`` (article 003's protocol, minus its leak): exactly N training images
      per class; of the rest, ``val_fraction`` goes to val and the remainder to test
      (``test_fraction`` is not used). Not available on pre-split folders.
    * ``groups`` (near-duplicates, indices into the index's paths): each group goes whole into one
      split, as one unit of the stratified draw (with its first member's class). A pre-split
      folder's own splits are kept; groups that span them are named in ``notes``.

    Raises:
        ConfigError: fractions outside [0, 1) or summing to 1 or more; a bad ``train_per_class``,
            or one on a pre-split folder.
        DataError: a class has no more than ``train_per_class`` images, or ``train/`` is empty.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ConfigError(
                f"Expected {name} in [0, 1). Received: {name}={value!r}.",
                hint=f"Set {name} to a fraction such as {0.1 if 'val' in name else 0.2}.", params=name,
            )
    units = [list(g) for g in groups if len(g) > 1]
    if units and not any(index.presplit):
        return _split_units(index, units, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                            train_per_class=train_per_class)
    if train_per_class is not None:
        return _per_class_split(index, train_per_class, val_fraction, seed)
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            "Expected val_fraction + test_fraction below 1 (some images must be left to train on). "
            f"Received: val_fraction={val_fraction!r}, test_fraction={test_fraction!r}.",
            hint="Lower one of them, e.g. val_fraction 0.1 and test_fraction 0.2.",
            params=("val_fraction", "test_fraction"),
        )
    labels = index.labels
    if not any(index.presplit):
        counts = index.class_counts()
        few = {name: n for name, n in counts.items() if n < 2}
        if few:
            listing = ", ".join(f"{name!r} has {n}" for name, n in few.items())
            raise DataError(f"Expected at least 2 images in every class (one to train on, one to test on). "
                            f"Received: {listing}.",
                            "Add images to those classes, or take their files out of the folder.")
        return _carve(np.arange(len(labels)), labels, val_fraction, test_fraction, seed)
    split = np.array([s or "" for s in index.presplit])
    pool = np.flatnonzero(split == "train")
    if pool.size == 0:
        raise DataError(
            f"Expected training images in {index.root / 'train'}. Received: none usable.",
            hint="Put images in train/, or remove the train/val/test folders to split automatically.",
        )
    has = {name: bool((split == name).any()) for name in ("val", "test")}
    parts = _carve(pool, labels, 0.0 if has["val"] else val_fraction, 0.0 if has["test"] else test_fraction, seed)
    for name, fraction in (("val", val_fraction), ("test", test_fraction)):
        if has[name]:
            setattr(parts, name, np.flatnonzero(split == name))
        elif fraction > 0:
            parts.notes.append(f"No {name}/ folder: carved {fraction:.0%} of each class in train/ as {name}.")
    spanning = [g for g in units if len({index.presplit[i] for i in g}) > 1]
    if spanning:
        example = ", ".join(index.relative(index.paths[i]) for i in spanning[0])
        parts.notes.append(f"{len(spanning)} near-duplicate groups span your train/val/test folders (their test "
                           f"score is inflated), e.g. {example}.")
    missing = sorted(set(index.class_names) - {index.class_names[y] for y in labels[parts.train]})
    if missing:
        parts.notes.append(f"Classes with no training images: {', '.join(missing)}.")
    return parts


def _split_units(index: FolderIndex, groups: list[list[int]], **options: Any) -> FolderSplits:
    """Split with every group as one unit (its first member's class), then put each unit's images back."""
    grouped = {i for g in groups for i in g}
    units = sorted([sorted(g) for g in groups] + [[i] for i in range(len(index.paths)) if i not in grouped])
    first = [u[0] for u in units]
    as_units = dataclasses.replace(index, paths=[index.paths[i] for i in first], labels=index.labels[first],
                                   presplit=[None] * len(units), sha256=[index.sha256[i] for i in first])
    parts = split_index(as_units, **options)

    def expand(unit_rows: np.ndarray) -> np.ndarray:
        return np.sort(np.concatenate([units[u] for u in unit_rows] or [[]])).astype(np.int64)

    images = sum(len(g) for g in groups)
    notes = [*parts.notes, f"Near-duplicates: {len(groups)} groups ({images} images) kept whole, each in one split."]
    return FolderSplits(train=expand(parts.train), val=expand(parts.val), test=expand(parts.test), notes=notes)


def _carve(pool: np.ndarray, labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> FolderSplits:
    """Test first (``test_fraction`` of each class of ``pool``), then val (``val_fraction`` of the pool)."""
    rest, test = _split(pool, labels, test_fraction, seed)
    # val_fraction is of the whole pool, so scale it to what is left after test.
    train, val = _split(rest, labels, val_fraction / (1 - test_fraction), seed + 1)
    return FolderSplits(train=train, val=val, test=test)


def _split(pool: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if fraction <= 0 or pool.size == 0:
        return pool, np.empty(0, dtype=np.int64)
    keep, take = stratified_split(labels[pool], fraction, seed)
    return pool[keep], pool[take]


def _per_class_split(index: FolderIndex, per_class: int, val_fraction: float, seed: int) -> FolderSplits:
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ConfigError(
            f"Expected train_per_class to be a positive integer. Received: train_per_class={per_class!r}.",
            hint="Set train_per_class to 1 or more.", params="train_per_class",
        )
    if any(index.presplit):
        raise ConfigError(
            f"train_per_class re-splits the whole folder, but {index.root} is already split into "
            f"train/val/test. Received: train_per_class={per_class!r}.",
            hint="Drop train_per_class to use the folder's own splits.", params="train_per_class",
        )
    counts = index.class_counts()
    short = {name: n for name, n in counts.items() if n <= per_class}
    if short:
        listing = ", ".join(f"{name!r} has {n}" for name, n in short.items())
        raise DataError(
            f"Expected more than {per_class} images in every class (train_per_class={per_class} "
            f"leaves the rest for val/test). Received: {listing}.",
            hint=f"Lower train_per_class below {min(short.values())}, or add images to those classes.",
            params="train_per_class",
        )
    train = []
    for y in range(len(index.class_names)):
        members = np.flatnonzero(index.labels == y)
        train.append(members[stratified_sample(np.zeros(members.size, np.int64), per_class, seed + y)])
    train_idx = np.sort(np.concatenate(train))
    rest = np.setdiff1d(np.arange(len(index.paths)), train_idx)
    test, val = _split(rest, index.labels, val_fraction, seed)
    return FolderSplits(train=train_idx, val=np.sort(val), test=np.sort(test))
