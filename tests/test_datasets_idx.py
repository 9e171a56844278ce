"""IDX files: round trips, gzip, and malformed input named in the error."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cnnkit.datasets.idx import read_idx, write_idx
from cnnkit.errors import DataError


@pytest.mark.parametrize(
    "array",
    [
        np.arange(10, dtype=np.uint8),
        np.arange(2 * 28 * 28, dtype=np.uint16).astype(np.uint8).reshape(2, 28, 28),
        np.array([-3, 0, 5], dtype=np.int8),
        np.array([[-300, 7], [1, 2]], dtype=np.int16),
        np.array([1, -70000], dtype=np.int32),
        np.array([0.5, -1.25], dtype=np.float32),
        np.array([[1e300]], dtype=np.float64),
    ],
    ids=lambda a: f"{a.dtype}-{a.ndim}d",
)
def test_round_trip(array):
    back = read_idx(write_idx(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_mnist_magic_numbers_and_big_endian_dims():
    labels = write_idx(np.zeros(60000, dtype=np.uint8))
    images = write_idx(np.zeros((2, 28, 28), dtype=np.uint8))
    assert labels[:8].hex() == "00000801" + "0000ea60"
    assert images[:16].hex() == "00000803" + "00000002" + "0000001c" + "0000001c"
    assert write_idx(np.array([1], dtype=np.int32))[-4:] == b"\x00\x00\x00\x01"


def test_reads_plain_and_gzipped_files(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    plain, gz = tmp_path / "x-idx3-ubyte", tmp_path / "x-idx3-ubyte.gz"
    plain.write_bytes(write_idx(array))
    gz.write_bytes(gzip.compress(write_idx(array)))
    np.testing.assert_array_equal(read_idx(plain), array)
    np.testing.assert_array_equal(read_idx(gz), array)
    np.testing.assert_array_equal(read_idx(gz.read_bytes()), array)


GOOD = write_idx(np.arange(6, dtype=np.uint8).reshape(1, 2, 3))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x12\x34" + GOOD[2:], r"bad magic number.*Received: 0x12340803"),
        (b"\x00\x00\x07\x03" + GOOD[4:], r"bad magic number.*0x00000703"),
        (b"\x00\x00\x08\x00", r"bad magic number"),
        (b"\x00\x00", r"too short for a header: 2 bytes"),
        (GOOD[:10], r"truncated inside its header"),
        (GOOD[:-1], r"size mismatch: its header says shape \(1, 2, 3\) \(6 data bytes\), but it holds 5"),
        (GOOD + b"\x00", r"size mismatch.*holds 7 data bytes"),
        (b"\x1f\x8b" + b"not really gzip", r"looks gzipped but does not decompress"),
    ],
    ids=["magic", "type-code", "zero-dims", "short", "header-truncated", "truncated", "padded", "bad-gzip"],
)
def test_malformed_files_name_the_file_and_the_problem(tmp_path, content, match):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        read_idx(path)
    assert str(path) in info.value.message


def test_bytes_are_named_by_the_caller():
    with pytest.raises(DataError, match=r"IDX file train-images-idx3-ubyte has a size mismatch"):
        read_idx(GOOD[:-1], name="train-images-idx3-ubyte")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"Cannot read IDX file .*nope"):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize(
    "array", [np.array(3, dtype=np.uint8), np.array([True]), np.array(["a"]), np.zeros(2, dtype=np.int64)]
)
def test_write_rejects_what_idx_cannot_hold(array):
    with pytest.raises(DataError, match=r"Expected an array with 1 to 255 dimensions and an IDX dtype"):
        write_idx(array)

