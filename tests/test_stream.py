"""Images left on disk: lazy rows read exactly what an in-memory array holds, batch by batch."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.datasets.lazy import LazyImages, take_rows
from cnnkit.datasets.stream import BatchStream


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
