"""Feed lazily read images to Keras: shuffled batches, reshuffled every epoch."""

from __future__ import annotations

import math

from cnnkit._backend import keras
import numpy as np

from cnnkit.datasets.lazy import LazyImages


class BatchStream(keras.utils.PyDataset):
    """Shuffled ``(pixels, labels)`` batches from lazily read images; reshuffled every epoch."""

    def __init__(self, x: LazyImages, y: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0) -> None:
        super().__init__()
        self.x, self.y, self.batch_size, self.shuffle = x, np.asarray(y), batch_size, shuffle
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])  # sequential reads
        return self.x.take(positions), self.y[positions]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._rng.permutation(len(self.x))
