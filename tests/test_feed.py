"""In-memory arrays fed to model.fit: every row once an epoch, a new seeded order each epoch."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnnkit.datasets import feed

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the tf.data feed is TensorFlow's")


def _epochs(dataset, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(n):  # one iterator per epoch, as model.fit makes them
        xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in dataset])
        out.append((np.concatenate(xs), np.concatenate(ys)))
    return out


def test_every_row_once_per_epoch_in_a_new_order():
    x = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1).repeat(2, axis=1)
    y = np.arange(50)
    batches = feed.batches(x, y, 16, shuffle=True, seed=3)
    (x1, y1), (x2, y2) = _epochs(batches, 2)
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]
    for xs, ys in ((x1, y1), (x2, y2)):
        np.testing.assert_array_equal(xs[:, 0, 0, 0], ys)  # pixels and labels stay paired
        assert sorted(ys) == list(range(50))
    assert list(y1) != list(y2) and list(y1) != list(range(50))
    # The same seed gives the same orders.
    (again, _), _ = _epochs(feed.batches(x, y, 16, shuffle=True, seed=3), 2)
    np.testing.assert_array_equal(again, x1)


def test_validation_batches_keep_their_order_and_dtype():
    x = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    y = np.arange(20) % 3
    (xs, ys), = _epochs(feed.batches(x, y, 8, shuffle=False), 1)
    assert xs.dtype == np.uint8
    np.testing.assert_array_equal(xs, x)
    np.testing.assert_array_equal(ys, y)


def test_fit_inputs_repeat_for_a_fixed_number_of_steps():
    x = np.zeros((10, 2, 2, 1), np.uint8)
    y = np.zeros(10, np.int64)
    finite = feed.fit_inputs(x, y, x, y, 4, seed=0)
    endless = feed.fit_inputs(x, y, x, y, 4, seed=0, repeat=True)
    assert len(list(finite["x"])) == 3
    assert sum(1 for _ in endless["x"].take(7)) == 7
    assert len(list(finite["validation_data"])) == 3
    assert not finite["x"].options().autotune.enabled  # the autotuner's thread stalls dropped iterators
