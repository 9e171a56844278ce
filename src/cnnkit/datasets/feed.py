"""Feed in-memory arrays to ``model.fit``: shuffled batches, reshuffled every epoch.

On the TensorFlow backend cnnkit builds the ``tf.data`` pipeline itself instead of
handing Keras the arrays. Keras' own array pipeline leaves tf.data's autotuner on;
its model thread sleeps between rounds of tuning, and destroying an iterator
(Keras makes a new one every epoch, for training and for validation) waits for
that sleep to end. On the 2-core CPU this added 4-5 s to 3 of 15 epoch ends of a
6-second epoch (benchmarks/RESULTS.md). A fixed, small pipeline with the
autotuner off has no such thread and no stall:

    all indices -> shuffle (seeded, new order each epoch) -> batch -> gather rows -> prefetch

The other backends get the arrays; their Keras adapters iterate NumPy directly. A run with its
own ``steps_per_epoch`` gets an endless generator instead, so an epoch never runs out of batches.
"""

from __future__ import annotations

from typing import Any, Iterator

from cnnkit._backend import keras
import numpy as np


def fit_inputs(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, batch_size: int, *,
               seed: int, repeat: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``model.fit``: training batches (shuffled) and validation batches.

    ``repeat=True`` makes the training stream endless, for a run that sets its own
    ``steps_per_epoch`` (each epoch then continues where the last one stopped).
    """
    if keras.backend.backend() != "tensorflow":
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
