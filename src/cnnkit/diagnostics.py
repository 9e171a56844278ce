"""How far to trust the probabilities: calibration (reliability diagram, ECE) and the top losses.

Like :mod:`cnnkit.evaluation`, everything works on the model's softmax output and integer
labels as NumPy arrays, so a fresh model, a reloaded artifact and a served predictor give the
same numbers.

Calibration follows Guo et al., "On Calibration of Modern Neural Networks" (2017): each
prediction's confidence is its largest probability; confidences are put in ``bins`` equal-width
bins over [0, 1]; the expected calibration error is the sample-weighted mean gap between a bin's
accuracy and its mean confidence, ``ECE = Σ_b (n_b / N)·|acc_b − conf_b|``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnkit.errors import ConfigError, DataError
from cnnkit.evaluation import EPSILON
from cnnkit.plots import save_figure

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
    y = np.asarray(y_true)
    if p.ndim != 2 or p.shape[0] == 0:
        raise DataError(f"Expected probabilities shaped (N, classes) with N ≥ 1. Received: shape {p.shape}.")
    if y.shape != (p.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"Expected one integer label per row of probabilities ({p.shape[0]}). "
            f"Received: y_true shape {y.shape}, dtype {y.dtype}."
        )
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise DataError(f"Expected labels in [0, {p.shape[1] - 1}]. Received: {y.min()}..{y.max()}.")
    return y.astype(np.int64), p


def calibration(y_true: Any, probs: Any, bins: int = DEFAULT_BINS) -> Calibration:
    """Reliability statistics of ``probs`` against ``y_true``.

    Example:
        >>> calibration([0, 1], [[0.9, 0.1], [0.2, 0.8]]).ece  # doctest: +ELLIPSIS
        0.15...
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


def plot_reliability(cal: Calibration, path: str | os.PathLike[str]) -> Path:
    """Reliability diagram (accuracy per confidence bin against the diagonal) over a count histogram."""
    fig = Figure(figsize=(5.5, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = np.diff(cal.edges)
    filled = cal.count > 0
    top.bar(cal.edges[:-1][filled], cal.accuracy[filled], width=width[filled], align="edge",
            edgecolor="black", color="#4c72b0", label="accuracy")
    top.bar(cal.edges[:-1][filled], (cal.confidence - cal.accuracy)[filled], bottom=cal.accuracy[filled],
            width=width[filled], align="edge", color="#dd8452", alpha=0.5, label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"Reliability diagram (ECE {cal.ece:.2%}, {len(cal.count)} bins)")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(cal.edges[:-1], cal.count, width=width, align="edge", color="grey", edgecolor="black")
    bottom.set_yscale("symlog")
    bottom.set_xlabel("confidence (largest probability)")
    bottom.set_ylabel("predictions")
    bottom.set_xlim(0, 1)
    return save_figure(fig, path)


def top_losses(y_true: Any, probs: Any, k: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` examples with the largest cross-entropy loss, largest first, and their losses."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"Expected k ≥ 1. Received: k={k!r}.")
    y, p = _check(y_true, probs)
    losses = -np.log(np.clip(p[np.arange(len(y)), y], EPSILON, 1 - EPSILON))
    order = np.argsort(-losses, kind="stable")[:k]
    return order, losses[order]
