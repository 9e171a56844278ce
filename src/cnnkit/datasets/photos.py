"""A folder of photos as a Dataset: index → profile → decode once (cached, parallel) → near-duplicates → honest splits.

The folder's files are listed and labelled by :mod:`cnnkit.datasets.folder`, profiled
(native sizes and modes, :mod:`cnnkit.datasets.profile`), decoded by the shared decoder into
the pixel cache (:mod:`cnnkit.datasets.pixelcache`), searched for near-duplicates
(:mod:`cnnkit.datasets.duplicates`), then split (stratified, seeded; byte-identical copies and
near-duplicate groups in one split only). Files that cannot be used are skipped and reported by
name with the reason, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.datasets.base import Dataset
from cnnkit.datasets.duplicates import HASH_SIDE, cached_hashes, check_mode, hashable, near_duplicate_groups
from cnnkit.datasets.exclude import excluded_report, read_excluded
from cnnkit.datasets.folder import FolderIndex, index_folder
from cnnkit.datasets.folder_splits import split_index
from cnnkit.datasets.lazy import LazyImages
from cnnkit.datasets.notes import folder_notes
from cnnkit.datasets.pixelcache import PIXELS, DecodedImages, decode_all
from cnnkit.datasets.profile import DataProfile, profile_images
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


@dataclass(eq=False)
class Inspected:
    """A folder indexed (files, classes, byte-identical copies) and profiled (native sizes, modes), not decoded."""

    index: FolderIndex
    profile: DataProfile


def inspect_folder(path: str | os.PathLike[str], *, label_regex: str | None = None,
                   manifest: str | os.PathLike[str] | None = None) -> Inspected:
    """Index a folder (or a ``.csv`` manifest given as ``path``) and read every image's native size and mode."""
    if manifest is None and os.fspath(path).endswith(".csv"):
        path, manifest = os.path.dirname(os.fspath(path)) or ".", path
    index = index_folder(path, label_regex=label_regex, manifest=manifest)
    return Inspected(index, profile_images(index.paths, index.labels, index.class_names))


def scan_folder(
    path: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] = 128,
    color_mode: str = "rgb",
    resize: str = "stretch",
    label_regex: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    near_duplicates: str = "group",
    inspected: Inspected | None = None,
) -> tuple[Inspected, DecodedImages]:
    """Inspect a folder (unless ``inspected`` is given), decode every file into the cache, find near-duplicates.

    The near-duplicate groups (``near_duplicates`` other than ``"off"``) go into ``inspected.profile.groups``.
    """
    check_mode(near_duplicates)
    inspected = inspected or inspect_folder(path, label_regex=label_regex, manifest=manifest)
    index, profile = inspected.index, inspected.profile
    size = _parse_size(image_size)
    decoded = decode_all(index.paths, index.sha256, size=size, color_mode=color_mode, resize=resize, home=home)
    profile.groups = []
    if near_duplicates != "off":
        # Hashed from one decode whatever the recipe's size and colour, so the groups (and the splits they
        # shape) are the same for every recipe trained on this folder: a comparison of recipes is a fair one.
        candidates = np.flatnonzero(decoded.ok & hashable(profile.widths, profile.heights))
        if len(candidates) > 1 and (size, color_mode, resize) == ((HASH_SIDE, HASH_SIDE), "rgb", "stretch"):
            hashes = cached_hashes(decoded.folder, decoded.pixels, decoded.ok)
            profile.groups = near_duplicate_groups(hashes, candidates)
        elif len(candidates) > 1:  # only the images large enough to hash are decoded again, once (cached)
            source = decode_all([index.paths[i] for i in candidates], [index.sha256[i] for i in candidates],
                                size=(HASH_SIDE, HASH_SIDE), color_mode="rgb", resize="stretch", home=home)
            local = near_duplicate_groups(cached_hashes(source.folder, source.pixels, source.ok),
                                          np.flatnonzero(source.ok))
            profile.groups = [[int(candidates[i]) for i in group] for group in local]
    return inspected, decoded


def near_duplicates_report(index: FolderIndex, groups: list[list[int]], action: str) -> str:
    """Every near-duplicate group, one per line (``action``: what was done with it)."""
    if not groups:
        return "Near-duplicates: none found."
    lines = [f"Near-duplicates: {len(groups)} group{'s' * (len(groups) != 1)} of look-alike images ({action}):"]
    for group in groups:
        names = {index.class_names[index.labels[i]] for i in group}
        clash = f"  (labels differ: {', '.join(sorted(names))})" if len(names) > 1 else ""
        lines.append("  " + " = ".join(index.relative(index.paths[i]) for i in group) + clash)
    return "\n".join(lines)


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
    near_duplicates: str = "group",
    inspected: Inspected | None = None,
    exclude: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Load a folder of labelled photos (sub-folder per class, class in file names, or a CSV manifest).

    ``exclude``: a CSV whose ``path`` column lists images to leave out (:mod:`cnnkit.datasets.exclude`).
    ``near_duplicates``: ``"group"`` keeps each group of look-alike images in one split, ``"drop"``
    keeps one image of each group, ``"off"`` does not look for them (byte-identical copies are
    always kept once). ``in_memory=None`` loads the decoded pixels into memory when they take at
    most :data:`IN_MEMORY_LIMIT` bytes, and otherwise leaves them on disk (:class:`LazyImages`),
    read batch by batch during training.

    Example:
        >>> ds = load_folder("weather", image_size=150, train_per_class=150)  # doctest: +SKIP
    """
    inspected, decoded = scan_folder(path, image_size=image_size, color_mode=color_mode, resize=resize,
                                     label_regex=label_regex, manifest=manifest, home=home,
                                     near_duplicates=near_duplicates, inspected=inspected)
    index, profile = inspected.index, inspected.profile
    ok = decoded.ok.copy()
    left_out, excluded = "", []
    if exclude is not None:  # after decoding: the pixel cache stays the folder's, whatever a run leaves out
        listed = read_excluded(exclude, index.root)
        rows = [i for i, p in enumerate(index.paths) if p in listed]
        ok[rows] = False
        excluded = [(index.paths[i], listed[index.paths[i]]) for i in rows]
        left_out = excluded_report(exclude, [why for _, why in excluded],
                                   len(set(listed) - {index.paths[i] for i in rows}))
    groups = [[i for i in g if ok[i]] for g in profile.groups]
    if near_duplicates == "drop":  # keep the first of each group (in train/ if the folder is split)
        for group in groups:
            keep = next((i for i in group if index.presplit[i] == "train"), group[0] if group else None)
            ok[[i for i in group if i != keep]] = False
        groups = []
    # Split only what decoded, so a broken file cannot take the place of a training image.
    usable = np.flatnonzero(ok)
    position = {int(row): k for k, row in enumerate(usable)}
    kept = dataclasses.replace(index, paths=[index.paths[i] for i in usable], labels=index.labels[usable],
                               presplit=[index.presplit[i] for i in usable], sha256=[index.sha256[i] for i in usable])
    splits = split_index(kept, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                         train_per_class=train_per_class,
                         groups=[[position[i] for i in g] for g in groups if len(g) > 1])

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
                        f"{len(x_test)} test images.", "cnnkit.dataview.verify(path) says which files failed and why.",
                        cli_hint=f"Run `cnnkit verify {path}` to see which files failed and why.")
    counts = f"Split: train {len(x_train)}, val {len(x_val)}, test {len(x_test)} (seed {seed})"
    action = {"group": "each kept whole in one split", "drop": "one image of each kept"}.get(near_duplicates, "")
    report = "\n".join([index.report(), *profile.lines(), decode_report(index, decoded),
                        *([near_duplicates_report(index, profile.groups, action)] if near_duplicates != "off" else []),
                        *([left_out] if left_out else []), counts, *splits.notes])
    return Dataset(
        name=Path(path).name or "images", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        x_val=x_val if len(x_val) else None, y_val=y_val if len(x_val) else None,
        class_names=index.class_names, color_mode=color_mode, source=str(index.root), report=report, resize=resize,
        profile=profile,
        notes=folder_notes(index, profile.groups if near_duplicates != "off" else [], action, excluded),
    )
