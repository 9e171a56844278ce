"""Read and write IDX files, the format MNIST is published in.

Layout: two zero bytes, one type byte (0x08 = uint8, ...), one byte with the
number of dimensions, then each dimension as a big-endian uint32, then the
data in C order, big-endian. MNIST labels are ``0x00000801`` (uint8, 1-D) and
images ``0x00000803`` (uint8, 3-D). Gzipped files are recognised by content.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from cnnkit.errors import DataError

# IDX type byte -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> np.ndarray:
    """Decode an IDX file (plain or gzipped) from a path or from its bytes.

    Args:
        source: a file path, or the file's content.
        name: what to call the data in error messages (defaults to the path, or ``"<bytes>"``).

    Returns:
        The array, in native byte order (uint8 for MNIST).

    Example:
        >>> read_idx(write_idx(np.arange(3, dtype=np.uint8)))
        array([0, 1, 2], dtype=uint8)
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), name or "<bytes>"
    else:
        label = name or str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise DataError(f"Cannot read IDX file {label}: {exc.strerror or exc}.") from exc
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"IDX file {label} looks gzipped but does not decompress: {exc}.",
                hint="The download is probably truncated; fetch the file again.",
            ) from exc
    return _decode(data, label)


def write_idx(array: np.ndarray) -> bytes:
    """Encode ``array`` as IDX bytes (uint8 1-D labels give magic 0x00000801).

    Example:
        >>> write_idx(np.zeros((2, 3, 3), dtype=np.uint8))[:4].hex()
        '00000803'
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    type_code = next((code for code, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == native), None)
    if type_code is None or array.ndim == 0 or array.ndim > 255:
        raise DataError(
            "Expected an array with 1 to 255 dimensions and an IDX dtype "
            f"({', '.join(str(dt.newbyteorder('=')) for dt in IDX_DTYPES.values())}). "
            f"Received: shape={array.shape}, dtype={array.dtype}.",
            hint="Convert images and labels with .astype('uint8') first.",
        )
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[type_code]).tobytes()


def _decode(data: bytes, label: str) -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"IDX file {label} is too short for a header: {len(data)} bytes.")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise DataError(
            f"IDX file {label} has a bad magic number: expected 0x000008XX-style "
            f"(0x00000801 for labels, 0x00000803 for images). Received: 0x{data[:4].hex()}.",
            hint="This is not an IDX file, or it is damaged; fetch it again.",
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"IDX file {label} is truncated inside its header: {ndim} dimensions need "
            f"{header_size} bytes, received {len(data)}."
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header_size != expected:
        raise DataError(
            f"IDX file {label} has a size mismatch: its header says shape {shape} "
            f"({expected} data bytes), but it holds {len(data) - header_size} data bytes.",
            hint="The file is truncated or padded; fetch it again.",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable copy in native byte order
