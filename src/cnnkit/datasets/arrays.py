"""The user's own data as NumPy arrays in one ``.npz`` file.

Expected keys: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (as written by
``np.savez(path, x_train=..., ...)``), plus an optional ``class_names`` string
array. Images are uint8, ``(N, H, W)`` or ``(N, H, W, C)`` with C = 1 or 3.
This is the user's data, so there is no checksum; everything else is checked
by :class:`~cnnkit.datasets.base.Dataset`, with the file named in the error.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from cnnkit.datasets.base import Dataset
from cnnkit.errors import DataError
from cnnkit.images import COLOR_MODES

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_HINT = "Write it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=..., class_names=...)."


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """Load a dataset from an ``.npz`` file of uint8 images and integer labels.

    Class names default to ``"0"``, ``"1"``, ... up to the largest label.

    Example:
        >>> ds = load_npz("tests/fixtures/mnist_subset.npz")  # doctest: +SKIP
        >>> ds.input_shape  # doctest: +SKIP
        (28, 28, 1)
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"Dataset file {file} does not exist.", hint="Check the path, or create it: " + _NPZ_HINT)
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [key for key in REQUIRED_KEYS if key not in npz.files]
            if missing:
                raise DataError(
                    f"Dataset file {file} lacks the key(s) {', '.join(missing)}. "
                    f"Received keys: {', '.join(npz.files) or 'none'}.",
                    hint=_NPZ_HINT,
                )
            arrays = {key: npz[key] for key in REQUIRED_KEYS}
            names = npz["class_names"] if "class_names" in npz.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # np.load raises ValueError for pickled objects (allow_pickle=False) and for non-npz content.
        raise DataError(
            f"Cannot read dataset file {file} as .npz: {exc}.",
            hint="Save plain numeric arrays (no Python objects) with " + _NPZ_HINT,
        ) from exc
    for part in ("x_train", "x_test"):
        if arrays[part].ndim == 3:  # (N, H, W) greyscale: add the channel axis models expect
            arrays[part] = arrays[part][..., None]
    channels = arrays["x_train"].shape[-1] if arrays["x_train"].ndim == 4 else 1
    color_mode = next((mode for mode, c in COLOR_MODES.items() if c == channels), None)
    if color_mode is None:
        raise DataError(
            f"Dataset file {file}: expected x_train with 1 (grey) or 3 (RGB) channels. "
            f"Received: shape={arrays['x_train'].shape}.",
            hint="Drop an alpha channel with x[..., :3].",
        )
    try:
        return Dataset(
            name=file.stem,
            class_names=_class_names(file, names, arrays),
            color_mode=color_mode,
            source=f"file {file}",
            **arrays,
        )
    except DataError as exc:
        raise DataError(f"Dataset file {file}: {exc.message}", hint=exc.hint) from exc


def _class_names(file: Path, names: np.ndarray | None, arrays: dict[str, np.ndarray]) -> list[str]:
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(
                f"Dataset file {file}: expected class_names as a 1-D array of strings. "
                f"Received: shape={names.shape}, dtype={names.dtype}.",
                hint="Save it as np.array(['cat', 'dog']).",
            )
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    labels = [arrays[k] for k in ("y_train", "y_test") if arrays[k].size and np.issubdtype(arrays[k].dtype, np.integer)]
    highest = max((int(y.max()) for y in labels), default=0)
    return [str(i) for i in range(max(highest, 0) + 1)]
