"""Class labels: the one check every part of cnnkit runs on them (datasets, splits, metrics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.errors import DataError


def check_labels(labels: Any, *, name: str = "y", num_classes: int | None = None, length: int | None = None,
                 integral_floats: bool = False, nonempty: bool = False) -> np.ndarray:
    """``labels`` as a 1-D ``int64`` array of class indices, or a DataError that says what is wrong.

    Args:
        name: what the labels are called in the message (``"y_train"``, ``"y_true"``).
        num_classes: when given, every label must be in ``[0, num_classes)``.
        length: when given, there must be this many labels (one per image).
        integral_floats: accept floats that hold whole numbers (``3.0``), as metrics do.
        nonempty: refuse an empty array.

    Example:
        >>> check_labels([0, 2, 1], num_classes=3).tolist()
        [0, 2, 1]
    """
    array = np.asarray(labels)
    if integral_floats and array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu" or (nonempty and array.size == 0):
        raise DataError(
            f"Expected {name} to be a {'non-empty ' if nonempty else ''}1-D array of integer class labels. "
            f"Received: shape={array.shape}, dtype={array.dtype}.",
            hint=f"For one-hot labels use {name}.argmax(axis=1); for whole-number floats {name}.astype('int64').",
        )
    if length is not None and len(array) != length:
        raise DataError(f"Expected one label per image in {name}. "
                        f"Received: {len(array)} labels for {length} image{'' if length == 1 else 's'}.")
    if num_classes is not None and array.size and (array.min() < 0 or array.max() >= num_classes):
        raise DataError(
            f"Expected {name} values in [0, {num_classes}) for {num_classes} classes. "
            f"Received: min={array.min()}, max={array.max()}.",
            hint="Labels must be 0-based class indices; check that class_names covers every class.",
        )
    return array.astype(np.int64, copy=False)
