"""A fixed number of steps per epoch: every epoch runs all of them, on every backend."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from cnnkit.datasets import feed

pytestmark = pytest.mark.backends


class CountBatches(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.per_epoch: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.per_epoch.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.per_epoch[-1] += 1


def test_steps_per_epoch_continue_the_stream_instead_of_running_dry():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)
    y = np.arange(10) % 2
    model = keras.Sequential([keras.Input((4, 4, 1), dtype="uint8"), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", steps_per_execution=1)
    count = CountBatches()
    # 3 batches of 4 rows per pass, 2 steps per epoch: epoch 2 starts with one batch left in the pass.
    inputs = feed.fit_inputs(x, y, x, y, 4, seed=0, repeat=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Keras warns "Your input ran out of data"
        model.fit(**inputs, epochs=4, steps_per_epoch=2, callbacks=[count], verbose=0)
    assert count.per_epoch == [2, 2, 2, 2]
