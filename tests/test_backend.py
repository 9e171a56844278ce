"""The backend's compiled prediction: any number of images, at most :func:`rows_per_call` of them a model call."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import _backend
from cnnkit._backend import keras


def _call_size_model(shape: tuple[int, int, int]) -> keras.Model:
    """Each image's answer: the number of images in the call it ran in, and the sum of its own pixels."""
    ops = keras.ops
    inputs = keras.Input(shape, dtype="uint8")
    flat = keras.layers.Flatten()(keras.layers.Lambda(lambda x: ops.cast(x, "float32"))(inputs))
    outputs = keras.layers.Lambda(lambda t: ops.concatenate(
        [ops.ones_like(t[:, :1]) * ops.sum(ops.ones_like(t[:, :1]), axis=0, keepdims=True),
         ops.sum(t, axis=1, keepdims=True)], axis=1))(flat)
    return keras.Model(inputs, outputs)


@pytest.mark.backends
def test_compiled_predict_slices_a_large_batch_and_keeps_the_order(monkeypatch):
    shape = (8, 8, 1)
    monkeypatch.setattr(_backend, "PREDICT_PIXELS", 3 * 8 * 8)  # three 8x8 images a call
    assert _backend.rows_per_call(shape) == 3
    x = np.random.default_rng(0).integers(0, 256, (7, *shape), dtype=np.uint8)
    out = _backend.compiled_predict(_call_size_model(shape))(x)
    assert out.shape == (7, 2) and out.dtype == np.float32
    assert out[:, 0].max() <= 3  # no call held more than three images (a power of two, 2, on a padding backend)
    np.testing.assert_allclose(out[:, 1], x.reshape(7, -1).sum(axis=1))  # each answer is its own image's
    assert _backend.compiled_predict(_call_size_model(shape))(x[:2])[:, 0].max() <= 2


def test_rows_per_call_counts_pixels_not_channels():
    assert _backend.rows_per_call((160, 160, 3)) == _backend.rows_per_call((160, 160, 1)) == 40
    assert _backend.rows_per_call((28, 28, 1)) == 1337  # a batch of 256 digits with 5 TTA views is one call
    assert _backend.rows_per_call((2048, 2048, 3)) == 1  # never none
