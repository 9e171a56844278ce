"""Stratified, seeded index selection: validation splits and subsets.

Both functions shuffle each class with one seeded generator and take a
per-class count from the front, so the same ``(y, seed)`` always gives the
same indices, and every class keeps its share of the data.
"""

from __future__ import annotations

import math

import numpy as np

from cnnkit.datasets.labels import check_labels
from cnnkit.errors import ConfigError


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (train_idx, val_idx), class by class.

    Each class with ``n`` samples gives ``round(val_fraction * n)`` of them to
    validation, but at least 1 and at most ``n - 1`` when ``n >= 2`` (so every
    class is seen in both parts); a class with a single sample stays in train.
    The two index arrays are sorted, disjoint, and together cover ``range(len(y))``.

    Example:
        >>> train_idx, val_idx = stratified_split(np.array([0, 0, 1, 1]), 0.5, seed=0)
        >>> len(train_idx), len(val_idx)
        (2, 2)
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError(
            f"Expected val_fraction strictly between 0 and 1. Received: val_fraction={val_fraction!r}.",
            hint="Pass a fraction such as 0.1 (10% of each class for validation).",
        )
    labels = check_labels(y, nonempty=True)
    classes, counts = np.unique(labels, return_counts=True)
    n_val = {
        c: 0 if n < 2 else min(max(math.floor(val_fraction * n + 0.5), 1), n - 1)
        for c, n in zip(classes.tolist(), counts.tolist())
    }
    val_idx = _take_per_class(labels, n_val, seed)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Return ``n`` sorted indices into ``y`` that keep each class's proportion.

    Per-class counts come from the largest-remainder method, so they sum to
    exactly ``n`` (ties go to the smaller class label).

    Example:
        >>> stratified_sample(np.array([0, 0, 0, 1, 1, 1]), 4, seed=0).size
        4
    """
    labels = check_labels(y, nonempty=True)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= len(labels):
        raise ConfigError(
            f"Expected a sample size between 1 and {len(labels)} (the number of samples available). "
            f"Received: n={n!r}.",
            hint="Ask for fewer samples, or pass None to keep them all.",
        )
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * (int(n) / len(labels))
    take = np.floor(quotas).astype(np.int64)
    # Stable sort on the negated remainder: ties keep class order.
    order = np.argsort(-(quotas - take), kind="stable")
    take[order[: int(n) - int(take.sum())]] += 1
    return _take_per_class(labels, dict(zip(classes.tolist(), take.tolist())), seed)


def _take_per_class(labels: np.ndarray, take: dict[int, int], seed: int) -> np.ndarray:
    """Shuffle each class with one generator (classes in sorted order) and take the first ``take[c]``."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in sorted(take):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(members)[: take[c]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)
