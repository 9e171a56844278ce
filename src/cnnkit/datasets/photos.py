"""A folder of photos as a Dataset: index → decode once (cached, parallel) → honest splits.

The folder's files are listed and labelled by :mod:`cnnkit.datasets.folder`,
decoded by the shared decoder into the pixel cache
(:mod:`cnnkit.datasets.pixelcache`), then split (stratified, seeded,
duplicates kept in one split only). Files that cannot be used are skipped and
reported by name with the reason, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from cnnkit.datasets.base import Dataset
from cnnkit.datasets.folder import FolderIndex, index_folder
from cnnkit.datasets.folder_splits import split_index
from cnnkit.datasets.lazy import LazyImages
from cnnkit.datasets.pixelcache import PIXELS, DecodedImages, decode_all
from cnnkit.errors import DataError


IN_MEMORY_LIMIT = int(os.environ.get("CNNKIT_IN_MEMORY_MB", "2048")) * 2**20  # larger decoded folders stream


def _parse_size(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or min(size) < 8 or max(size) > 1024:
        raise DataError(f"Expected an image size between 8 and 1024 pixels. Received: image_size={image_size!r}.",
                        "Pass a size such as 128 (square), or (height, width) from Python.")
    return int(size[0]), int(size[1])


def decode_report(index: FolderIndex, decoded: DecodedImages) -> str:
    """Lines naming every file the decoder refused, with its reason."""
    if not decoded.errors:
        return "Decoded every image."
    lines = [f"Could not decode {len(decoded.errors)} files (skipped):"]
    lines += [f"  {index.relative(index.paths[row])}: {reason}" for row, reason in sorted(decoded.errors.items())]
    return "\n".join(lines)


def scan_folder(
    path: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] = 128,
    color_mode: str = "rgb",
    resize: str = "stretch",
    label_regex: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
) -> tuple[FolderIndex, DecodedImages]:
    """Index a folder (or a ``.csv`` manifest given as ``path``) and decode every file into the cache."""
    if manifest is None and os.fspath(path).endswith(".csv"):
        path, manifest = os.path.dirname(os.fspath(path)) or ".", path
    index = index_folder(path, label_regex=label_regex, manifest=manifest)
    decoded = decode_all(index.paths, index.sha256, size=_parse_size(image_size), color_mode=color_mode,
                         resize=resize, home=home)
    return index, decoded


def load_folder(
    path: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] = 128,
    color_mode: str = "rgb",
    resize: str = "stretch",
    label_regex: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    train_per_class: int | None = None,
    home: str | os.PathLike[str] | None = None,
    in_memory: bool | None = None,
) -> Dataset:
    """Load a folder of labelled photos (sub-folder per class, class in file names, or a CSV manifest).

    ``in_memory=None`` loads the decoded pixels into memory when they take at most
    :data:`IN_MEMORY_LIMIT` bytes, and otherwise leaves them on disk (:class:`LazyImages`),
    read batch by batch during training.

    Example:
        >>> ds = load_folder("weather", image_size=150, train_per_class=150)  # doctest: +SKIP
    """
    index, decoded = scan_folder(path, image_size=image_size, color_mode=color_mode, resize=resize,
                                 label_regex=label_regex, manifest=manifest, home=home)
    # Split only what decoded, so a broken file cannot take the place of a training image.
    usable = np.flatnonzero(decoded.ok)
    kept = dataclasses.replace(index, paths=[index.paths[i] for i in usable], labels=index.labels[usable],
                               presplit=[index.presplit[i] for i in usable], sha256=[index.sha256[i] for i in usable])
    splits = split_index(kept, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                         train_per_class=train_per_class)

    if in_memory is None:
        in_memory = decoded.pixels.nbytes <= IN_MEMORY_LIMIT

    def take(kept_rows: np.ndarray) -> tuple[np.ndarray | LazyImages, np.ndarray]:
        rows = usable[kept_rows]  # rows of the cache
        if in_memory:
            return np.asarray(decoded.pixels[rows]), index.labels[rows]
        return LazyImages(decoded.folder / PIXELS, decoded.pixels.shape, rows), index.labels[rows]

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = take(splits.train), take(splits.val), take(splits.test)
    if not len(x_train) or not len(x_test):
        raise DataError(f"After skipping unusable files, {path} leaves {len(x_train)} training and "
                        f"{len(x_test)} test images.", "Run `cnnkit verify PATH` to see which files failed and why.")
    counts = f"Split: train {len(x_train)}, val {len(x_val)}, test {len(x_test)} (seed {seed})"
    report = "\n".join([index.report(), decode_report(index, decoded), counts, *splits.notes])
    return Dataset(
        name=Path(path).name or "images", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        x_val=x_val if len(x_val) else None, y_val=y_val if len(x_val) else None,
        class_names=index.class_names, color_mode=color_mode, source=str(index.root), report=report, resize=resize,
    )
