"""Data the user already holds in Python: a :class:`Dataset`, or NumPy arrays as Keras hands them out.

``keras.datasets.mnist.load_data()`` returns ``((x_train, y_train), (x_test, y_test))``; a user with one
set of images has ``(x, y)``. Both become a :class:`Dataset` here, checked as every loader's is, so a
notebook can pass what it holds to :func:`cnnkit.train` and :func:`cnnkit.evaluate`. A name or a path
is left to :func:`cnnkit.datasets.load`.

Example:
    >>> import numpy as np
    >>> x, y = np.zeros((20, 8, 8), np.uint8), np.arange(20) % 2
    >>> as_dataset((x, y)).input_shape
    (8, 8, 1)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.datasets.base import Dataset
from cnnkit.datasets.splits import stratified_split
from cnnkit.errors import ConfigError, DataError

ARRAYS = "arrays"  # the name of a dataset made from bare arrays
_EXPECTED = ("a dataset name or path (str), a cnnkit Dataset, (x, y) arrays, or Keras' "
             "((x_train, y_train), (x_test, y_test))")


def is_named(data: Any) -> bool:
    """Whether ``data`` names a dataset (a built-in's name, a folder, a manifest, an .npz file)."""
    return isinstance(data, (str, os.PathLike))


def as_dataset(data: Any, *, class_names: Sequence[str] | None = None, test_fraction: float = 0.2,
               seed: int = 0) -> Dataset:
    """``data`` as a :class:`Dataset`: one as it is, or one made from arrays.

    ``(x, y)``: a stratified, seeded ``test_fraction`` of it is held out as the test set.
    ``((x_train, y_train), (x_test, y_test))``: the test set as given. Images are uint8 pixels 0-255,
    ``(N, H, W)`` (grey) or ``(N, H, W, C)`` with 1 or 3 channels; labels are integers. Class names
    default to ``"0"``, ``"1"``, ... up to the largest label.

    Raises:
        ConfigError: ``data`` is none of these (a ``tf.data.Dataset``, a list of files, ...).
        DataError: the arrays are not images and labels (shapes and dtypes are reported as given).
    """
    if isinstance(data, Dataset):
        return data
    pairs = _pairs(data)
    if pairs is None:
        raise ConfigError(f"Expected data as {_EXPECTED}. Received: {_describe(data)}.",
                          "Pass a name such as 'mnist', a folder path, or the arrays themselves.", params="data")
    parts = ("x", "y") if len(pairs) == 1 else ("x_train", "y_train", "x_test", "y_test")
    arrays = [(_images(x, parts[2 * i]), _labels(np.asarray(y), parts[2 * i + 1])) for i, (x, y) in enumerate(pairs)]
    for i, (x, y) in enumerate(arrays):
        _same_length(x, y, parts[2 * i], parts[2 * i + 1])
    if len(arrays) == 1:  # (x, y): carve the test set, class by class
        x, y = arrays[0]
        train, test = stratified_split(y, test_fraction, seed)
        arrays = [(x[train], y[train]), (x[test], y[test])]
    (x_train, y_train), (x_test, y_test) = arrays
    top = int(max(y_train.max(), y_test.max()))
    names = list(class_names) if class_names is not None else [str(i) for i in range(top + 1)]
    channels = x_train.shape[-1] if x_train.ndim == 4 else None
    color_mode = "rgb" if channels == 3 else "grayscale"
    return Dataset(ARRAYS, x_train, y_train, x_test, y_test, names, color_mode, source="arrays given in Python")


def fingerprint(dataset: Dataset) -> str:
    """A short digest of a dataset's pixels and labels (arrays in memory) or of its source (images left on disk).

    Two calls with the same data give the same digest, so a re-run notebook cell can tell that nothing changed.
    """
    digest = hashlib.blake2b(digest_size=12)
    for part in ("x_train", "y_train", "x_test", "y_test"):
        values = getattr(dataset, part)
        digest.update(f"{part}{values.shape}{values.dtype}".encode())
        if isinstance(values, np.ndarray):
            digest.update(np.ascontiguousarray(values).data)
    digest.update(f"{dataset.name}|{dataset.source}|{dataset.class_names}".encode())
    return digest.hexdigest()


def source_fingerprint(data: str) -> str:
    """``data`` (a name or path) with a digest of what lies there: each file's path, size and modification time.

    A folder whose photos were added, removed or replaced gives another digest, so a notebook cell run again
    after the data changed trains again; a built-in name (``"mnist"``) is its own digest.
    """
    path = Path(data).expanduser()
    if not path.exists():
        return data
    digest = hashlib.blake2b(digest_size=12)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}|{stat.st_size}|"
                      f"{stat.st_mtime_ns}\n".encode())
    return f"{data}#{digest.hexdigest()}"


def _pairs(data: Any) -> list[tuple[Any, Any]] | None:
    """``[(x, y)]`` or ``[(x_train, y_train), (x_test, y_test)]``; ``None`` for anything else."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        return None
    first, second = data
    if all(isinstance(p, (tuple, list)) and len(p) == 2 for p in (first, second)):
        return [tuple(first), tuple(second)]
    if hasattr(first, "shape") or isinstance(first, (list, tuple)):
        return [(first, second)]
    return None


def _images(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:  # (N, H, W): grey images, as keras.datasets.mnist gives them
        return x[..., None]
    if x.ndim != 4:
        raise DataError(f"Expected {name} as images shaped (N, H, W) or (N, H, W, C). Received: shape={x.shape}.",
                        "Stack the images into one array; one image alone is x[None].")
    return x


def _labels(y: np.ndarray, name: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:
        raise DataError(f"Expected {name} as one integer label per image. Received: shape={y.shape} (one-hot?).",
                        f"Pass {name}.argmax(axis=1).")
    if not np.issubdtype(y.dtype, np.integer) or y.size == 0:
        raise DataError(f"Expected {name} as integer labels. Received: dtype {y.dtype}, {y.size} values.",
                        f"Pass {name}.astype('int64'), or map class names to integers first.")
    return y.reshape(-1)


def _same_length(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    if len(x) != len(y):
        raise DataError(f"Expected as many labels as images. Received: {x_name} has {len(x)} images, "
                        f"{y_name} has {len(y)} labels.", "Pass one label per image.")


def _describe(data: Any) -> str:
    kind = type(data).__module__.split(".")[0] + "." + type(data).__qualname__
    if isinstance(data, (tuple, list)):
        return f"a {type(data).__name__} of {len(data)} items"
    return kind if not kind.startswith("builtins.") else type(data).__name__
