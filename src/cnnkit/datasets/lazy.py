"""Images that stay on disk: lazily indexed rows of the pixel cache.

A folder larger than memory is decoded once into the pixel cache; training then
reads only the rows each batch needs (``os.pread``, no memory map, so the
process holds a batch of pixels, not the dataset). :class:`LazyImages` behaves
like the slice of a ``uint8`` array that cnnkit's code uses: ``shape``,
``dtype``, ``len``, integer and index-array indexing, ``np.asarray``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


class LazyImages:
    """Rows ``rows`` of a ``(N, H, W, C)`` uint8 file, read on demand."""

    def __init__(self, path: str | os.PathLike[str], full_shape: tuple[int, ...], rows: np.ndarray) -> None:
        self.path = Path(path)
        self.full_shape = tuple(full_shape)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.dtype = np.dtype(np.uint8)
        self._row_bytes = int(np.prod(self.full_shape[1:]))

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.full_shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.full_shape)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * self._row_bytes

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray | LazyImages:
        """An integer gives one image (read now); a slice or index array gives a lazy subset."""
        if isinstance(key, (int, np.integer)):
            return self.read(np.asarray([self.rows[key]]))[0]
        return LazyImages(self.path, self.full_shape, self.rows[key])

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Read the images at ``positions`` (indices into this subset) into memory."""
        return self.read(self.rows[np.asarray(positions, dtype=np.int64)])

    def read(self, file_rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(file_rows), *self.full_shape[1:]), dtype=np.uint8)
        flat = out.reshape(len(file_rows), self._row_bytes)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i, row in enumerate(file_rows):
                flat[i] = np.frombuffer(os.pread(fd, self._row_bytes, int(row) * self._row_bytes), dtype=np.uint8)
        finally:
            os.close(fd)
        return out

    def __array__(self, dtype: Any = None, copy: object = None) -> np.ndarray:
        array = self.read(self.rows)
        return array if dtype is None else array.astype(dtype)


def take_rows(x: np.ndarray | LazyImages, positions: np.ndarray) -> np.ndarray:
    """Rows ``positions`` of an array or of lazy images, as an in-memory array."""
    return x.take(positions) if isinstance(x, LazyImages) else np.asarray(x[positions])
