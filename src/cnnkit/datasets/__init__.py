"""Datasets: built-in ones by name (verified, cached) and the user's own arrays.

Example:
    >>> from cnnkit.datasets import load
    >>> ds = load("mnist")  # doctest: +SKIP
    >>> ds = load("my_data.npz")  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from typing import Any

from cnnkit.datasets.arrays import load_npz
from cnnkit.datasets.base import Dataset, Split
from cnnkit.datasets.mnist import load_mnist
from cnnkit.datasets.photos import load_folder
from cnnkit.datasets.splits import stratified_sample, stratified_split
from cnnkit.errors import ConfigError

# Built-in datasets: name -> one-line description (for `cnnkit datasets` and error messages).
BUILTIN: dict[str, str] = {
    "mnist": "MNIST handwritten digits: 60,000 train + 10,000 test greyscale 28x28 images, 10 classes; "
    "verified by SHA-256 and cached in $CNNKIT_HOME/datasets/mnist",
}
_LOADERS: dict[str, Callable[..., Dataset]] = {"mnist": load_mnist}

__all__ = [
    "BUILTIN",
    "Dataset",
    "Split",
    "load",
    "load_folder",
    "load_mnist",
    "load_npz",
    "stratified_sample",
    "stratified_split",
]


def load(
    name_or_path: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    **folder_options: Any,
) -> Dataset:
    """Load a built-in dataset by name, the user's ``.npz`` arrays, or a folder of photos.

    Args:
        name_or_path: a key of :data:`BUILTIN` (``"mnist"``), a path ending in ``.npz``, a folder of
            images, or a ``.csv`` manifest (``path,label``).
        source: for built-ins, the user's own copy to use instead of downloading.
        home: cnnkit's cache root (default ``$CNNKIT_HOME`` or ``~/.cache/cnnkit``).
        folder_options: for folders, the options of :func:`load_folder` (image_size, color_mode,
            resize, label_regex, val_fraction, test_fraction, seed, train_per_class); ignored otherwise.

    Raises:
        ConfigError: the name is neither a built-in nor an existing path.
        DataError: the data cannot be fetched, verified or decoded.
    """
    text = os.fspath(name_or_path)
    if text in _LOADERS:
        return _LOADERS[text](source=source, home=home)
    if source is not None:
        raise ConfigError(
            f"A source applies to built-in datasets only. Received: source={source!r} for {text}.",
            hint="Drop source, or pass the file you meant as the dataset.", params="source",
        )
    if text.endswith(".npz"):
        return load_npz(text)
    if os.path.isdir(text) or (text.endswith(".csv") and os.path.isfile(text)):
        return load_folder(text, home=home, **folder_options)  # a .csv is read as a manifest
    near = [*BUILTIN, *_siblings(text)]
    close = difflib.get_close_matches(text, near, n=1, cutoff=0.6)
    raise ConfigError(
        f"Unknown dataset {text!r}. Expected one of: {', '.join(BUILTIN)}, a path to an .npz file, "
        "a folder of images, or a .csv manifest (path,label)." + (f" Did you mean {close[0]!r}?" if close else ""),
        hint="Use 'mnist' for the built-in digits, or check the path.", params="data",
    )


def _siblings(text: str) -> list[str]:
    """The folders, ``.npz`` and ``.csv`` files beside the path ``text`` names: what a typo may have meant."""
    parent = os.path.dirname(text) or "."
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    return [os.path.join(parent, n) if os.path.dirname(text) else n for n in names
            if n.endswith((".npz", ".csv")) or os.path.isdir(os.path.join(parent, n))]
