"""Decoded-pixel cache: decode a list of image files once, in parallel, into one memory-mapped file.

Decoding photos (JPEG, resizing a 4752x3168 image down to 150x150) costs far more
than a training step on them. The cache decodes every file once with the shared
:func:`cnnkit.images.decode_image`, on all cores, and keeps the ``uint8`` pixels in
``$CNNKIT_HOME/pixel-cache/<key>/pixels.u8``. The key covers each file's content
hash and the decode settings, so a changed, added or removed file (or another
image size, colour mode or resize policy) means a new cache: it can never serve
stale pixels. Files that fail to decode are recorded with their reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.fileio import TMP_MARKER, cache_home
from cnnkit.images import channels_for, decode_image

# Bump when decode_image's output changes, to retire old caches (2: JPEGs scaled inside the decoder;
# 3: float grey decoded instead of black, 16/32-bit grey rounded rather than truncated).
DECODER_VERSION = 3
PIXELS = "pixels.u8"
META = "meta.json"
_CHUNK = 64
# What a decoding worker runs: a fresh interpreter that imports the decoder and nothing of the parent's.
_WORKER = "from cnnkit.datasets.pixelcache import _serve; _serve()"

# One chunk of work: the pixels file, (row, image path) pairs, the array's shape, and the decode settings.
_Task = tuple[str, list[tuple[int, str]], tuple[int, ...], tuple[int, int], str, str]


@dataclass
class DecodedImages:
    """Pixels of every file that decoded, and the reason for every one that did not."""

    pixels: np.ndarray  # uint8 (N, H, W, C) memory map, row i = paths[i]; rows of failed files are zero
    ok: np.ndarray  # bool (N,)
    errors: dict[int, str]  # row -> reason
    folder: Path
    built: bool  # False when served from an existing cache


def cache_key(hashes: Sequence[str], size: tuple[int, int], color_mode: str, resize: str) -> str:
    """The cache identity: decoder version, decode settings, and every file's content hash in order."""
    digest = hashlib.sha256(f"v{DECODER_VERSION}|{size}|{color_mode}|{resize}|".encode())
    for h in hashes:
        digest.update(h.encode())
    return digest.hexdigest()[:32]


def _decode_chunk(task: _Task) -> dict[int, str]:
    """Worker: decode some files straight into the shared memory map; return failures."""
    pixels_path, items, shape, size, color_mode, resize = task
    pixels = np.memmap(pixels_path, dtype=np.uint8, mode="r+", shape=shape)
    errors: dict[int, str] = {}
    for row, path in items:
        try:
            pixels[row] = decode_image(path, size=size, color_mode=color_mode, resize=resize)
        except CnnkitError as exc:
            errors[row] = exc.message
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not take the whole run down; report it per file
            errors[row] = f"{type(exc).__name__}: {exc}"
    pixels.flush()
    return errors


def decode_all(paths: Sequence[Path], hashes: Sequence[str], *, size: tuple[int, int], color_mode: str,
               resize: str = "stretch", home: str | os.PathLike[str] | None = None,
               workers: int | None = None) -> DecodedImages:
    """Decode ``paths`` into a cached ``(N, H, W, C)`` uint8 memory map (parallel on first use).

    Args:
        paths: image files; ``hashes[i]`` is the SHA-256 of ``paths[i]``'s bytes.
        size: ``(height, width)`` every image is resized to.
        workers: decoding processes (default: all cores).
    """
    root = cache_home(home) / "pixel-cache"
    folder = root / cache_key(hashes, size, color_mode, resize)
    shape = (len(paths), size[0], size[1], channels_for(color_mode))
    built = False
    if not (folder / META).is_file():
        _build(folder, paths, shape, size, color_mode, resize, workers or os.cpu_count() or 1)
        built = True
    meta = json.loads((folder / META).read_text())
    errors = {int(k): v for k, v in meta["errors"].items()}
    ok = np.ones(len(paths), dtype=bool)
    ok[list(errors)] = False
    pixels = (np.memmap(folder / PIXELS, dtype=np.uint8, mode="r", shape=shape) if len(paths)
              else np.zeros(shape, np.uint8))
    return DecodedImages(pixels=pixels, ok=ok, errors=errors, folder=folder, built=built)


def _build(folder: Path, paths: Sequence[Path], shape: tuple[int, ...], size: tuple[int, int], color_mode: str,
           resize: str, workers: int) -> None:
    tmp = folder.with_name(f"{folder.name}{TMP_MARKER}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        errors: dict[int, str] = {}
        if len(paths):
            np.memmap(tmp / PIXELS, dtype=np.uint8, mode="w+", shape=shape).flush()
            items = [(i, str(p)) for i, p in enumerate(paths)]
            tasks = [(str(tmp / PIXELS), items[i:i + _CHUNK], shape, size, color_mode, resize)
                     for i in range(0, len(items), _CHUNK)]
            if workers > 1 and len(tasks) > 1:
                errors.update(_decode_in_workers(tasks, workers))
            else:
                for task in tasks:
                    errors.update(_decode_chunk(task))
        (tmp / META).write_text(json.dumps({"shape": shape, "errors": {str(k): v for k, v in errors.items()},
                                            "files": [str(p) for p in paths]}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _decode_in_workers(tasks: list[_Task], workers: int) -> dict[int, str]:
    """Run ``tasks`` on ``workers`` decoding processes, each taking the next task when done with one.

    Fresh interpreters, not forks (the parent may hold TensorFlow's threads and locks), started with
    :mod:`subprocess` rather than :mod:`multiprocessing`: a multiprocessing worker first imports the parent's
    main script, so a script that imports Keras at its top loaded TensorFlow into every worker (two workers
    on the weather photos: 1.5 GB more and 14 s instead of 2 s). These import the decoder alone.
    """
    todo: queue.SimpleQueue[_Task] = queue.SimpleQueue()
    for task in tasks:
        todo.put(task)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the cnnkit imported here

    def worker() -> dict[int, str]:
        found: dict[int, str] = {}
        with subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env) as proc:
            assert proc.stdin is not None and proc.stdout is not None  # both are pipes
            while True:
                try:
                    task = todo.get_nowait()
                except queue.Empty:
                    break
                try:
                    proc.stdin.write(json.dumps(task) + "\n")
                    proc.stdin.flush()
                    answer = proc.stdout.readline()
                except OSError:
                    answer = ""
                if not answer:
                    raise CnnkitError(f"A decoding worker stopped (exit status {proc.wait()}); its error is above.",
                                      "Run again; if it stops again, report the error.")
                found.update({int(row): reason for row, reason in json.loads(answer).items()})
            proc.stdin.close()
        return found

    errors: dict[int, str] = {}
    with ThreadPoolExecutor(workers) as pool:  # threads that only wait on their worker's pipe
        for found in pool.map(lambda _: worker(), range(min(workers, len(tasks)))):
            errors.update(found)
    return errors


def _serve() -> None:
    """A decoding worker: a task (JSON) a line on stdin, that task's failures (JSON) a line on stdout."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a library's stray print goes to stderr, not among the answers
    for line in sys.stdin:
        path, items, shape, size, color_mode, resize = json.loads(line)
        errors = _decode_chunk((path, [(int(row), name) for row, name in items], tuple(shape), tuple(size),
                                color_mode, resize))
        answers.write(json.dumps(errors) + "\n")
        answers.flush()
