"""The one feed of model.fit (cnnkit.training.inputs): in memory, left on disk, and with a fixed step count.

Every row once an epoch, a new seeded order each epoch, pixels and labels paired; a run with its own
steps per epoch never runs dry.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from cnnkit.datasets import Split
from cnnkit.datasets.lazy import LazyImages, take_rows
from cnnkit.training import inputs
from cnnkit.training.config import TrainConfig
from cnnkit.training.inputs import BatchStream, fit_inputs

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the tf.data feed is TensorFlow's")


def _epochs(dataset, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(n):  # one iterator per epoch, as model.fit makes them
        xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in dataset])
        out.append((np.concatenate(xs), np.concatenate(ys)))
    return out


@tensorflow_only
def test_every_row_once_per_epoch_in_a_new_order():
    x = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1).repeat(2, axis=1)
    y = np.arange(50)
    batches = inputs.batches(x, y, 16, shuffle=True, seed=3)
    (x1, y1), (x2, y2) = _epochs(batches, 2)
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]
    for xs, ys in ((x1, y1), (x2, y2)):
        np.testing.assert_array_equal(xs[:, 0, 0, 0], ys)  # pixels and labels stay paired
        assert sorted(ys) == list(range(50))
    assert list(y1) != list(y2) and list(y1) != list(range(50))
    # The same seed gives the same orders.
    (again, _), _ = _epochs(inputs.batches(x, y, 16, shuffle=True, seed=3), 2)
    np.testing.assert_array_equal(again, x1)


@tensorflow_only
def test_validation_batches_keep_their_order_and_dtype():
    x = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    y = np.arange(20) % 3
    (xs, ys), = _epochs(inputs.batches(x, y, 8, shuffle=False), 1)
    assert xs.dtype == np.uint8
    np.testing.assert_array_equal(xs, x)
    np.testing.assert_array_equal(ys, y)


@tensorflow_only
def test_fit_inputs_repeat_for_a_fixed_number_of_steps():
    x = np.zeros((10, 2, 2, 1), np.uint8)
    y = np.zeros(10, np.int64)
    finite, callbacks = fit_inputs(Split(x, y, x, y), TrainConfig(batch_size=4, seed=0))
    endless, _ = fit_inputs(Split(x, y, x, y), TrainConfig(batch_size=4, seed=0, steps_per_epoch=2))
    assert callbacks == []
    assert len(list(finite["x"])) == 3
    assert sum(1 for _ in endless["x"].take(7)) == 7
    assert len(list(finite["validation_data"])) == 3
    assert not finite["x"].options().autotune.enabled  # the autotuner's thread stalls dropped iterators


class CountBatches(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.per_epoch: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.per_epoch.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.per_epoch[-1] += 1


@pytest.mark.backends
def test_steps_per_epoch_continue_the_stream_instead_of_running_dry():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)
    y = np.arange(10) % 2
    model = keras.Sequential([keras.Input((4, 4, 1), dtype="uint8"), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", steps_per_execution=1)
    count = CountBatches()
    # 3 batches of 4 rows per pass, 2 steps per epoch: epoch 2 starts with one batch left in the pass.
    feed, _ = fit_inputs(Split(x, y, x, y), TrainConfig(batch_size=4, seed=0, steps_per_epoch=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Keras warns "Your input ran out of data"
        model.fit(**feed, epochs=4, steps_per_epoch=2, callbacks=[count], verbose=0)
    assert count.per_epoch == [2, 2, 2, 2]


@pytest.fixture
def on_disk(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (50, 6, 5, 3), dtype=np.uint8)
    path = tmp_path / "pixels.u8"
    pixels.tofile(path)
    return pixels, path


def test_lazy_rows_match_the_array(on_disk):
    pixels, path = on_disk
    rows = np.array([3, 7, 7, 49, 0])
    lazy = LazyImages(path, pixels.shape, rows)
    assert lazy.shape == (5, 6, 5, 3) and len(lazy) == 5 and lazy.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(lazy), pixels[rows])
    np.testing.assert_array_equal(lazy[3], pixels[49])
    # Index arrays and slices compose lazily, as NumPy fancy indexing would.
    sub = lazy[np.array([4, 1])]
    assert isinstance(sub, LazyImages)
    np.testing.assert_array_equal(np.asarray(sub), pixels[[0, 7]])
    np.testing.assert_array_equal(take_rows(lazy, np.array([0, 2])), pixels[[3, 7]])
    np.testing.assert_array_equal(take_rows(pixels, np.array([0, 2])), pixels[[0, 2]])


def test_batch_stream_covers_every_image_once_per_epoch(on_disk):
    pixels, path = on_disk
    lazy = LazyImages(path, pixels.shape, np.arange(50))
    feed, _ = fit_inputs(Split(lazy, np.arange(50), lazy, np.arange(50)), TrainConfig(batch_size=16))
    assert isinstance(feed["x"], BatchStream) and isinstance(feed["validation_data"], BatchStream)
    y = np.arange(50)
    stream = BatchStream(LazyImages(path, pixels.shape, np.arange(50)), y, 16, shuffle=True, seed=1)
    assert len(stream) == 4
    for _ in range(2):
        seen = []
        for i in range(len(stream)):
            xb, yb = stream[i]
            np.testing.assert_array_equal(xb, pixels[yb])  # pixels and labels stay paired
            seen.extend(yb.tolist())
        assert sorted(seen) == list(range(50))
        stream.on_epoch_end()
