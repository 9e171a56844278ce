"""One writer per run folder: a lock that a second ``cnnkit train`` on the same ``--out`` cannot take.

Without it, a second run given the same folder (with ``--overwrite``) deleted the first's files
mid-training. The lock is an OS file lock (``filelock``, released by the kernel when its process
dies, so a killed run never leaves the folder locked) on a hidden file *beside* the run folder:
``--overwrite`` deletes the folder itself, and a lock inside it would go with it. The file also says
who holds it (process id, host, command, start time), so the refusal can name the first process.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import filelock

from cnnkit.errors import ArtifactError


def lock_path(run_dir: str | os.PathLike[str]) -> Path:
    """The hidden lock file of ``run_dir``: ``runs/.a.cnnkit-lock`` for ``runs/a``."""
    run_dir = Path(run_dir).absolute()
    return run_dir.with_name(f".{run_dir.name}.cnnkit-lock")


@contextlib.contextmanager
def run_folder_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block; refuse at once (ArtifactError) if another process holds it.

    Example:
        >>> with run_folder_lock("runs/a"):  # doctest: +SKIP
        ...     train_into("runs/a")
    """
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise ArtifactError(f"The run folder {run_dir} is in use by another training run: {_owner(path)}. "
                            f"Received: out={str(run_dir)!r}.",
                            "Wait for that run to finish (or stop it), or choose another out.", params="out") from None
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv) or "python",
                 "started": datetime.datetime.now().isoformat(timespec="seconds")}
        path.write_text(json.dumps(owner) + "\n", encoding="utf-8")  # for the next process's refusal
        yield
    finally:
        lock.release()


def _owner(path: Path) -> str:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
        return (f"process {owner['pid']} on {owner['host']}, started {owner['started']} "
                f"({owner['command']})")
    except (OSError, ValueError, KeyError, TypeError):  # written a moment after the lock was taken
        return "a process that has just started"
