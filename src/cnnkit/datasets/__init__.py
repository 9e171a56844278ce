"""Datasets: built-in ones by name (verified, cached) and the user's own arrays.

Example:
    >>> from cnnkit.datasets import load
    >>> ds = load("mnist")  # doctest: +SKIP
    >>> ds = load("my_data.npz")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cnnkit.datasets.arrays import load_npz
from cnnkit.datasets.base import Dataset
from cnnkit.datasets.mnist import load_mnist
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
    "load",
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
) -> Dataset:
    """Load a built-in dataset by name, or the user's ``.npz`` file by path.

    Args:
        name_or_path: a key of :data:`BUILTIN` (``"mnist"``) or a path ending in ``.npz``.
        source: for built-ins, the user's own copy to use instead of downloading (CLI ``--from``).
        home: cnnkit's cache root for built-ins (default ``$CNNKIT_HOME`` or ``~/.cache/cnnkit``).

    Raises:
        ConfigError: the name is neither a built-in nor an ``.npz`` path.
        DataError: the data cannot be fetched, verified or decoded.
    """
    text = os.fspath(name_or_path)
    if text in _LOADERS:
        return _LOADERS[text](source=source, home=home)
    if text.endswith(".npz"):
        if source is not None:
            raise ConfigError(
                f"A source (--from) applies to built-in datasets only. Received: source={source!r} "
                f"for the file {text}.",
                hint="Drop --from, or pass the file you meant as the dataset.",
            )
        return load_npz(text)
    raise ConfigError(
        f"Unknown dataset {text!r}. Expected one of: {', '.join(BUILTIN)}, "
        "or a path to an .npz file (folders come later).",
        hint="Run with 'mnist' for the built-in digits, or save your arrays with np.savez to a .npz file.",
    )
