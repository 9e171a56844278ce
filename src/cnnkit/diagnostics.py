"""How far to trust the probabilities: calibration (ECE, and the bins of a reliability diagram) and the top losses.

Like :mod:`cnnkit.evaluation`, everything works on the model's softmax output and integer
labels as NumPy arrays, so a fresh model, a reloaded artifact and a served predictor give the
same numbers.

Calibration follows Guo et al., "On Calibration of Modern Neural Networks" (2017): each
prediction's confidence is its largest probability; confidences are put in ``bins`` equal-width
bins over [0, 1]; the expected calibration error is the sample-weighted mean gap between a bin's
accuracy and its mean confidence, ``ECE = Σ_b (n_b / N)·|acc_b − conf_b|``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.datasets.labels import check_labels
from cnnkit.errors import ConfigError, DataError
from cnnkit.evaluation import EPSILON

# 15 bins as in Guo et al.; fewer makes ECE coarser, more leaves bins empty on small test sets.
DEFAULT_BINS = 15


@dataclass
class Calibration:
    """Per-bin statistics and the expected / maximum calibration error."""

    edges: np.ndarray  # (bins + 1,) bin boundaries over [0, 1]
    confidence: np.ndarray  # (bins,) mean confidence per bin, NaN where empty
    accuracy: np.ndarray  # (bins,) accuracy per bin, NaN where empty
    count: np.ndarray  # (bins,) predictions per bin
    ece: float
    mce: float  # the largest gap over non-empty bins

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for metrics.json (empty bins as None)."""
        def plain(values: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else round(float(v), 6) for v in values]

        return {"ece": self.ece, "mce": self.mce, "bins": len(self.count), "edges": plain(self.edges),
                "confidence": plain(self.confidence), "accuracy": plain(self.accuracy),
                "count": [int(c) for c in self.count]}


def _check(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise DataError(f"Expected probabilities shaped (N, classes) with N ≥ 1. Received: shape {p.shape}.")
    return check_labels(y_true, name="y_true", num_classes=p.shape[1], length=p.shape[0]), p


def calibration(y_true: Any, probs: Any, bins: int = DEFAULT_BINS) -> Calibration:
    """Reliability statistics of ``probs`` against ``y_true``.

    Example:
        >>> round(calibration([0, 1], [[0.9, 0.1], [0.2, 0.8]]).ece, 4)
        0.15
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"Expected a positive number of bins. Received: bins={bins!r}.")
    y, p = _check(y_true, probs)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Right-closed bins (a, b], the first also holding 0: a confidence of exactly 1 is in the last bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / count
        mean_acc = np.bincount(which, weights=correct, minlength=bins) / count
    gaps = np.abs(mean_acc - mean_conf)
    filled = count > 0
    ece = float(np.sum(count[filled] / len(y) * gaps[filled]))
    mce = float(gaps[filled].max())
    return Calibration(edges=edges, confidence=mean_conf, accuracy=mean_acc, count=count, ece=ece, mce=mce)


def top_losses(y_true: Any, probs: Any, k: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` examples with the largest cross-entropy loss, largest first, and their losses."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"Expected k ≥ 1. Received: k={k!r}.")
    y, p = _check(y_true, probs)
    losses = -np.log(np.clip(p[np.arange(len(y)), y], EPSILON, 1 - EPSILON))
    order = np.argsort(-losses, kind="stable")[:k]
    return order, losses[order]
