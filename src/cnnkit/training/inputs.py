"""The one feed of ``model.fit``: training and validation batches, however the images are held.

:func:`fit_inputs` picks one of three, by where the images are and how the run is laid out:

- **Arrays in memory.** On TensorFlow cnnkit builds the ``tf.data`` pipeline itself instead of
  handing Keras the arrays. Keras' own array pipeline leaves tf.data's autotuner on; its model
  thread sleeps between rounds of tuning, and destroying an iterator (Keras makes a new one every
  epoch, for training and for validation) waits for that sleep to end. On the 2-core CPU this
  added 4-5 s to 3 of 15 epoch ends of a 6-second epoch (benchmarks/RESULTS.md). A fixed, small
  pipeline with the autotuner off has no such thread and no stall:
  all indices -> shuffle (seeded, new order each epoch) -> batch -> gather rows -> prefetch.
  The other backends get the arrays; their Keras adapters iterate NumPy directly. A run with its
  own ``steps_per_epoch`` gets an endless generator instead, so an epoch never runs out of batches.
- **Images left on disk** (:class:`~cnnkit.datasets.lazy.LazyImages`): :class:`BatchStream` reads
  each shuffled batch's rows from the pixel cache.
- **Data-parallel**: :class:`GlobalBatches`, this process's share of every global batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from cnnkit import _backend
from cnnkit._backend import keras
from cnnkit.datasets import Split
from cnnkit.datasets.lazy import LazyImages, take_rows
from cnnkit.training import distributed
from cnnkit.training.config import TrainConfig


def fit_inputs(split: Split, config: TrainConfig, initial_epoch: int = 0) -> tuple[dict[str, Any], list[Any]]:
    """``model.fit``'s data arguments for ``split``, and the callbacks the feed needs (none but data-parallel's)."""
    if distributed.is_active():
        return _global(split, config, initial_epoch)
    x_train, x_val = split.x_train, split.x_val
    if isinstance(x_train, LazyImages) and isinstance(x_val, LazyImages):  # a folder left on disk: both are
        return {"x": BatchStream(x_train, split.y_train, config.batch_size, shuffle=True, seed=config.seed),
                "validation_data": BatchStream(x_val, split.y_val, config.batch_size, shuffle=False)}, []
    return _arrays(np.asarray(x_train), split.y_train, np.asarray(x_val), split.y_val, config.batch_size,
                   seed=config.seed, repeat=bool(config.steps_per_epoch)), []


def _arrays(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, batch_size: int, *,
            seed: int, repeat: bool = False) -> dict[str, Any]:
    """Arrays in memory: batches gathered from them (tf.data on TensorFlow), no Python per batch.

    ``repeat=True`` makes the training stream endless, for a run that sets its own
    ``steps_per_epoch`` (each epoch then continues where the last one stopped).
    """
    if _backend.name() != "tensorflow":
        if repeat:  # Keras' array adapter would restart each epoch and cut short one that runs dry
            return {"x": _endless(x, y, batch_size, seed), "shuffle": False,  # the generator shuffles itself
                    "validation_data": (x_val, y_val), "validation_batch_size": batch_size}
        return {"x": x, "y": y, "validation_data": (x_val, y_val), "batch_size": batch_size, "shuffle": True}
    train = batches(x, y, batch_size, shuffle=True, seed=seed)
    return {"x": train.repeat() if repeat else train, "shuffle": False,  # the dataset shuffles itself
            "validation_data": batches(x_val, y_val, batch_size, shuffle=False)}


def _endless(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled batches without end, a new seeded order for each pass over the rows (other backends)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            yield x[rows], y[rows]


def with_sample_weights(batches: Iterable[Any],
                        class_weight: dict[int, float]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(x, y)`` batches as ``(x, y, weight)``: each image weighs its class's weight."""
    lookup = np.array([class_weight.get(c, 1.0) for c in range(max(class_weight) + 1)], dtype=np.float32)
    for x, y in batches:
        yield x, y, lookup[y]


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0) -> Any:
    """A ``tf.data.Dataset`` of ``(pixels, labels)`` batches from arrays held in memory."""
    import tensorflow as tf

    pixels, labels = tf.constant(x), tf.constant(y)
    indices = tf.data.Dataset.range(len(x))
    if shuffle:
        indices = indices.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = (indices.batch(batch_size)
               .map(lambda i: (tf.gather(pixels, i), tf.gather(labels, i)))
               .prefetch(2))
    options = tf.data.Options()
    options.autotune.enabled = False  # no autotuner thread, so no stall when an iterator is dropped
    options.deterministic = True
    return dataset.with_options(options)


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


def _global(split: Split, config: TrainConfig, initial_epoch: int) -> tuple[dict[str, Any], list[Any]]:
    """Data-parallel: this process's share of every global batch, and the callback that tells it the epoch."""
    import jax

    share = {"devices": jax.device_count(), "process": jax.process_index(), "processes": jax.process_count()}
    train = GlobalBatches(split.x_train, split.y_train, config.batch_size, seed=config.seed, epoch=initial_epoch,
                          **share)
    val = GlobalBatches(split.x_val, split.y_val, config.batch_size, **share)
    return {"x": train, "validation_data": val, "shuffle": False}, [_EpochOf(train)]


class GlobalBatches(keras.utils.PyDataset):
    """This process's share of every global batch (the layout: :mod:`cnnkit.training.distributed`).

    Without ``seed`` the batches are in order (validation); with it, shuffled per epoch by
    ``(seed, epoch)``.
    """

    def __init__(self, x: Any, y: np.ndarray, global_batch: int, *, devices: int, process: int, processes: int,
                 seed: int | None = None, epoch: int = 0) -> None:
        super().__init__()
        self.x, self.y, self.global_batch, self.seed, self.epoch = x, np.asarray(y), global_batch, seed, epoch
        self.process, self.processes = process, processes
        full, rest = divmod(len(x), global_batch)
        rest -= rest % devices  # every device takes the same number of rows
        self.sizes = [global_batch] * full + ([rest] if rest else [])
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.sizes)

    def order(self) -> np.ndarray:
        if self.seed is None:
            return np.arange(len(self.x))
        if self._order is None or self._order[0] != self.epoch:
            self._order = (self.epoch, np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x)))
        return self._order[1]

    def rows(self, index: int) -> np.ndarray:
        """Positions (into x) of this process's rows of global batch ``index``."""
        share = self.sizes[index] // self.processes
        start = index * self.global_batch + self.process * share
        return self.order()[start:start + share]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.sort(self.rows(index))  # sequential reads; the order inside a batch does not matter
        return take_rows(self.x, rows), self.y[rows]


class _EpochOf(keras.callbacks.Callback):
    """Tells shuffled batches the epoch Keras starts, so the order depends on it alone."""

    def __init__(self, batches: GlobalBatches) -> None:
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches.epoch = epoch
