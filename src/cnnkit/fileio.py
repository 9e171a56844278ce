"""Atomic file writes: a reader (or a crash) never sees half a file.

Every file cnnkit writes goes through :func:`atomic_path`: the content is
written to a temporary name in the same folder, flushed, and renamed over the
target with ``os.replace`` (atomic on POSIX). A killed process leaves at most a
``*.cnnkit-tmp*`` file behind, which :func:`remove_stale_temporaries` deletes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnkit.errors import StorageError

TMP_MARKER = ".cnnkit-tmp"
_FULL = (errno.ENOSPC, errno.EDQUOT)


def cache_home(home: str | os.PathLike[str] | None = None) -> Path:
    """cnnkit's cache root: ``home`` if given, else ``$CNNKIT_HOME``, else ``~/.cache/cnnkit``."""
    return Path(home or os.environ.get("CNNKIT_HOME") or "~/.cache/cnnkit").expanduser()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the target's suffix (Keras insists on ``.keras``,
    ``.weights.h5``, matplotlib infers the format from it).

    Example:
        >>> with atomic_path("run/metrics.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".weights.h5") else target.suffix
    tmp = target.with_name(f"{target.name}{TMP_MARKER}{os.getpid()}{suffix}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno not in _FULL and "No space left" not in str(exc):  # h5py reports errno 28 in its text
            raise
        raise StorageError(f"No space left on the device while writing {target}. Received: {exc.strerror or exc}.",
                           "Free some space there, then run the command again: the file was not changed, and a "
                           "training run continues from its last completed epoch with resume=True.",
                           params="resume") from exc
    finally:
        if tmp.is_dir():  # a folder export (SavedModel) that did not make it
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporaries left by a killed writer under ``folder``; return them."""
    root = Path(folder)
    if not root.is_dir():
        return []
    stale = [p for p in root.rglob(f"*{TMP_MARKER}*") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale
