"""The evaluation's files in the run folder: confusion matrix (CSV and PNG), per-class CSV, prediction grid."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import artifact
from cnnkit.datasets.labels import check_labels
from cnnkit.datasets.lazy import LazyImages, take_rows
from cnnkit.errors import DataError
from cnnkit.evaluation import (
    Evaluation,
    check_class_names,
    check_probabilities,
    pick_prediction_examples,
    prediction_titles,
)
from cnnkit.fileio import write_text
from cnnkit.plots import plot_confusion_matrix, plot_image_grid


def _csv_text(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_evaluation(
    evaluation: Evaluation,
    images: np.ndarray | LazyImages,
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    out_dir: str | os.PathLike[str],
) -> dict[str, Path]:
    """Write the confusion matrix (CSV + PNG), per-class CSV and a prediction grid.

    Returns the written paths under the keys ``confusion_matrix_csv``,
    ``confusion_matrix_png``, ``per_class_csv`` and ``predictions_png``.

    Example:
        >>> ev = evaluate_probabilities(y, probs, names)  # doctest: +SKIP
        >>> write_evaluation(ev, x_test, y, probs, names, "run/eval")  # doctest: +SKIP
    """
    names = check_class_names(class_names)
    p = check_probabilities(probs, len(names))
    y = check_labels(y_true, name="y_true", num_classes=len(names), integral_floats=True)
    shape = tuple(images.shape) if hasattr(images, "shape") else np.shape(images)  # lazy images stay on disk
    n_images = shape[0] if shape else 0
    if not (y.shape[0] == p.shape[0] == n_images):
        raise DataError(
            "images, y_true and probs must have one entry per sample. "
            f"Received: images.shape={shape}, y_true.shape={y.shape}, "
            f"probs.shape={p.shape}."
        )
    cm = np.asarray(evaluation.confusion)
    if cm.shape != (len(names), len(names)):
        raise DataError(
            f"evaluation.confusion must be ({len(names)}, {len(names)}) for {len(names)} "
            f"class_names. Received: shape {cm.shape}.",
            hint="Pass the same class_names that evaluate_probabilities was given.",
        )

    out = Path(out_dir)
    paths = {
        "confusion_matrix_csv": out / artifact.CONFUSION_MATRIX_CSV,
        "confusion_matrix_png": out / artifact.CONFUSION_MATRIX_PNG,
        "per_class_csv": out / artifact.PER_CLASS_CSV,
        "predictions_png": out / artifact.PREDICTIONS_PNG,
    }
    header = ["true\\predicted", *names]
    write_text(
        paths["confusion_matrix_csv"],
        _csv_text([header, *([names[i], *map(int, row)] for i, row in enumerate(cm))]),
    )
    plot_confusion_matrix(cm, names, paths["confusion_matrix_png"])
    fields = ["class", "precision", "recall", "f1", "support"]
    write_text(
        paths["per_class_csv"],
        _csv_text([fields, *([row[f] for f in fields] for row in evaluation.per_class)]),
    )
    y_pred = p.argmax(axis=1)
    idx = pick_prediction_examples(y, y_pred)
    titles, colors = prediction_titles(y, y_pred, names, idx)
    plot_image_grid(take_rows(images, idx), titles, paths["predictions_png"], title_colors=colors)
    return paths
