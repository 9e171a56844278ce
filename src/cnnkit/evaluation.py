"""Metrics from predicted probabilities: accuracy, loss, confusion matrix, per-class report.

Everything works on plain NumPy arrays (the model's softmax output and integer
labels), so it never needs Keras and gives the same numbers for a fresh model,
a reloaded artifact or a served predictor. Numbers only: the run folder's files
(confusion matrix CSV and PNG, per-class CSV, prediction grid) are written by
:func:`cnnkit.report.write_evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from cnnkit.datasets.labels import check_labels
from cnnkit.errors import ConfigError, DataError

# Same clipping as Keras' categorical cross-entropy, so our loss matches model.evaluate.
EPSILON = 1e-7
MOST_CONFUSED_LIMIT = 10


@dataclass(repr=False)
class Evaluation:
    """Metrics of one model on one labelled set (see :func:`evaluate_probabilities`)."""

    accuracy: float
    loss: float  # mean categorical cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]
    balanced_accuracy: float  # mean recall over the classes present: every class counts the same
    confusion: np.ndarray  # (K, K) int, rows = true class, columns = predicted class
    per_class: list[dict[str, Any]]  # {"class", "precision", "recall", "f1", "support"}
    macro_f1: float
    most_confused: list[dict[str, Any]]  # {"true", "predicted", "count"}, largest first
    class_names: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"Evaluation(accuracy {self.accuracy:.2%}, balanced {self.balanced_accuracy:.2%}, "
                f"loss {self.loss:.4f}, {int(np.asarray(self.confusion).sum()):,} images, "
                f"{len(self.per_class)} classes)")

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as plain Python lists, floats and ints (JSON-serialisable)."""
        def plain(row: dict[str, Any]) -> dict[str, Any]:
            # NumPy scalars -> Python numbers (json cannot encode np.float32/np.int64).
            return {k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()}

        return {
            "accuracy": float(self.accuracy),
            "loss": float(self.loss),
            "balanced_accuracy": float(self.balanced_accuracy),
            "macro_f1": float(self.macro_f1),
            "confusion": np.asarray(self.confusion).astype(np.int64).tolist(),
            "per_class": [plain(row) for row in self.per_class],
            "most_confused": [plain(pair) for pair in self.most_confused],
        }


def check_class_names(class_names: Sequence[str]) -> list[str]:
    """``class_names`` as a list of distinct strings, or a ConfigError."""
    names = list(class_names) if not isinstance(class_names, str) else []
    if not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"class_names must be a non-empty list of strings. Received: {class_names!r}."
        )
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"class_names must be unique. Received duplicates: {duplicates}.")
    return names


def check_probabilities(probs: Any, num_classes: int) -> np.ndarray:
    """``probs`` as float64 ``(N, num_classes)`` rows of probabilities, or a DataError (logits are refused)."""
    array = np.asarray(probs)
    if array.ndim != 2 or array.shape[1] != num_classes:
        raise DataError(
            f"probs must have shape (N, {num_classes}): one probability per class_name. "
            f"Received: probs.shape={array.shape}."
        )
    if array.dtype.kind not in "biuf" or not np.all(np.isfinite(array)):
        raise DataError(f"probs must hold finite numbers. Received: dtype {array.dtype}.")
    array = array.astype(np.float64)
    # Logits would give a silently wrong loss; refuse them instead of guessing.
    sums = array.sum(axis=1)
    out_of_range = array.min(initial=0.0) < -1e-6 or array.max(initial=0.0) > 1 + 1e-6
    if out_of_range or np.any(np.abs(sums - 1) > 1e-3):
        raise DataError(
            "probs must be probabilities (each row in [0, 1], summing to 1). "
            f"Received: values from {array.min():.4g} to {array.max():.4g}, "
            f"row sums from {sums.min():.4g} to {sums.max():.4g}.",
            hint="If these are logits, apply a softmax first.",
        )
    return array


def evaluate_probabilities(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> Evaluation:
    """Compute accuracy, loss, confusion matrix and per-class metrics.

    ``y_true`` is (N,) integer labels and ``probs`` is the (N, K) softmax output
    with K == len(class_names); the prediction is the most probable class.

    Example:
        >>> evaluate_probabilities(np.array([0, 1]), np.array([[0.9, 0.1], [0.6, 0.4]]), ["a", "b"]).accuracy
        0.5
    """
    names = check_class_names(class_names)
    k = len(names)
    p = check_probabilities(probs, k)
    y = check_labels(y_true, name="y_true", num_classes=k, integral_floats=True)
    if y.shape[0] != p.shape[0]:
        raise DataError(
            "y_true and probs must have one row per sample. "
            f"Received: y_true.shape={y.shape}, probs.shape={p.shape}."
        )
    if y.shape[0] == 0:
        raise DataError("Cannot evaluate on zero samples. Received: y_true.shape=(0,).")

    y_pred = p.argmax(axis=1)
    labels = np.arange(k)
    true_prob = np.clip(p[np.arange(len(y)), y], EPSILON, 1.0 - EPSILON)
    cm = confusion_matrix(y, y_pred, labels=labels).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, y_pred, labels=labels, zero_division=0
    )
    per_class = [
        {
            "class": names[i],
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(k)
    ]
    return Evaluation(
        accuracy=float(np.mean(y_pred == y)),
        loss=float(-np.mean(np.log(true_prob))),
        balanced_accuracy=float(np.mean(recall[support > 0])),
        confusion=cm,
        per_class=per_class,
        macro_f1=float(np.mean(f1)),
        most_confused=_most_confused(cm, names),
        class_names=names,
    )


def _most_confused(cm: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    off_diagonal = cm.copy()
    np.fill_diagonal(off_diagonal, 0)
    rows, cols = np.nonzero(off_diagonal)
    # Ties keep label order (stable sort), so reports do not change between runs.
    order = np.argsort(-off_diagonal[rows, cols], kind="stable")[:MOST_CONFUSED_LIMIT]
    return [
        {"true": names[r], "predicted": names[c], "count": int(off_diagonal[r, c])}
        for r, c in zip(rows[order], cols[order])
    ]


def _check_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.shape != p.shape:
        raise DataError(
            "y_true and y_pred must be 1-D label arrays of the same length. "
            f"Received: y_true.shape={t.shape}, y_pred.shape={p.shape}.",
            hint="Pass class indices, e.g. probs.argmax(axis=1), not one-hot rows.",
        )
    return t, p


def pick_prediction_examples(
    y_true: np.ndarray, y_pred: np.ndarray, n: int = 20, seed: int = 0
) -> np.ndarray:
    """Choose up to ``n`` sample indices to show, mixing mistakes and correct predictions.

    Misclassified samples take up to half of the places (at least one if any
    exist), correct ones fill the rest; if either kind runs short the other fills
    in. The result is sorted and depends only on the labels and ``seed``.

    Example:
        >>> idx = pick_prediction_examples(np.array([0, 1, 1, 2]), np.array([0, 1, 0, 2]), n=2)
        >>> 2 in idx  # the one mistake is always shown
        True
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer. Received: n={n!r}.")
    t, p = _check_pair(y_true, y_pred)
    wrong = np.flatnonzero(t != p)
    right = np.flatnonzero(t == p)
    n = min(int(n), t.shape[0])
    n_wrong = min(len(wrong), max(1, n // 2)) if n else 0
    n_right = min(len(right), n - n_wrong)
    n_wrong = min(len(wrong), n - n_right)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([
        rng.choice(wrong, size=n_wrong, replace=False),
        rng.choice(right, size=n_right, replace=False),
    ])
    return np.sort(chosen).astype(np.int64)


def prediction_titles(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], idx: Sequence[int] | np.ndarray
) -> tuple[list[str], list[str]]:
    """Return titles ``"Prediction: 7 – Actual: 3"`` and colours ("black" right, "red" wrong).

    Example:
        >>> prediction_titles(np.array([3]), np.array([7]), [str(d) for d in range(10)], [0])
        (['Prediction: 7 – Actual: 3'], ['red'])
    """
    names = check_class_names(class_names)
    t, p = _check_pair(y_true, y_pred)
    t = check_labels(t, name="y_true", num_classes=len(names), integral_floats=True)
    p = check_labels(p, name="y_pred", num_classes=len(names), integral_floats=True)
    indices = np.asarray(idx, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= t.shape[0]):
        raise DataError(
            f"idx must hold sample indices in [0, {t.shape[0] - 1}]. "
            f"Received: values from {indices.min()} to {indices.max()}."
        )
    titles = [f"Prediction: {names[p[i]]} \u2013 Actual: {names[t[i]]}" for i in indices]
    colors = ["black" if p[i] == t[i] else "red" for i in indices]
    return titles, colors
