"""Image folders: turn a folder of the user's photos into an index of files, labels and splits.

Nothing here decodes pixels (that is :mod:`cnnkit.images`); this module only
lists files, finds each one's class, hashes bytes to drop duplicate copies, and
keeps the result (splitting is :mod:`cnnkit.datasets.folder_splits`). The label mode is detected in this order:

1. ``manifest``: a CSV with header ``path,label`` (paths relative to the CSV's folder, or absolute).
2. pre-split: ``root/train/`` (and optionally ``val/``, ``test/``); inside each, class
   sub-folders or files labelled by name, as below.
3. ``subfolders``: one sub-folder per class (deeper folders belong to their top-level class).
4. ``filename``: a flat folder; the class is group 1 of ``label_regex`` searched in
   the file's stem (``rain12.jpg`` -> ``rain``), taken exactly as captured.

Example:
    >>> index = index_folder("photos/")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnkit.datasets.manifest import read_manifest
from cnnkit.errors import ConfigError, DataError
from cnnkit.images import IMAGE_SUFFIXES

# Leading letters/underscores before the digits: rain12.jpg -> rain, ankle_boot3.png -> ankle_boot.
DEFAULT_LABEL_REGEX = r"^([A-Za-z_]+?)_?\d"
SPLIT_NAMES = ("train", "val", "test")
# Folder names (any case) that mean a split, as the common layouts spell them: Keras and Ultralytics use
# val/, Roboflow's classification export valid/, many Kaggle sets training/ validation/ testing/.
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
# Files an OS or photo tool drops next to images; they are not the user's data, so not worth a skip line.
_SYSTEM_FILES = {"thumbs.db", "desktop.ini"}
_CHUNK = 1 << 20  # 1 MiB reads keep memory flat on large photos
_HASH_THREADS = 8  # hashing is I/O bound: threads overlap the reads
_COLLAPSE_OVER = 20  # more non-image files than this are reported as one count


class _Candidate(NamedTuple):
    path: Path
    label: str
    split: str | None


@dataclass(eq=False)  # eq would compare arrays element-wise and fail
class FolderIndex:
    """The usable images of a folder with their classes, plus what was left out and why.

    Attributes:
        root: the folder indexed (absolute).
        label_mode: ``"subfolders"``, ``"filename"`` or ``"manifest"``.
        class_names: sorted; label ``i`` means ``class_names[i]``.
        paths: usable image files (absolute), sorted.
        labels: ``int64`` index into ``class_names``, one per path.
        presplit: ``"train"``/``"val"``/``"test"`` per path when the folder has those sub-folders (or
            :data:`SPLIT_ALIASES` of them: ``valid/``, ``Training/``, ...), else None.
        sha256: hex content hash per path.
        skipped: ``(path, reason)`` for every file not used.
        duplicates: ``(dropped copy, kept file)`` byte-identical pairs; only the kept file is in ``paths``.
        conflicting_labels: dropped copy -> its own label, where that differs from the kept file's label.
    """

    root: Path
    label_mode: str
    class_names: list[str]
    paths: list[Path]
    labels: np.ndarray
    presplit: list[str | None]
    sha256: list[str]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)
    conflicting_labels: dict[Path, str] = field(default_factory=dict)

    def class_counts(self) -> dict[str, int]:
        """Images per class, in ``class_names`` order."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, counts)}

    def files_per_class(self) -> dict[str, int]:
        """Files found per class, byte-identical copies included (what a user counts on disk)."""
        found = self.class_counts()
        kept_label = {p: self.class_names[y] for p, y in zip(self.paths, self.labels)}
        for dropped, kept in self.duplicates:
            label = self.conflicting_labels.get(dropped, kept_label.get(kept))
            if label in found:
                found[label] += 1
        return found

    def report(self) -> str:
        """Human-readable summary: mode, counts per class, every skipped file and every duplicate."""
        per_split = ", ".join(f"{s} {self.presplit.count(s)}" for s in SPLIT_NAMES if s in self.presplit)
        mode = self.label_mode + (f", pre-split: {per_split}" if per_split else "")
        lines = [
            f"Image folder {self.root} (label mode: {mode})",
            f"{len(self.paths)} images in {len(self.class_names)} classes:",
        ]
        width = max(len(c) for c in self.class_names)
        found = self.files_per_class()
        if self.duplicates:
            lines.append(f"  {'class':<{width}}  files  used (without duplicates)")
        for name, n in self.class_counts().items():
            note = "  (a single image: it cannot be in both train and test)" if n == 1 else ""
            counts = f"{found[name]:>5}  {n:>4}" if self.duplicates else f"{n}"
            lines.append(f"  {name:<{width}}  {counts}{note}")
        other = {p for p, reason in self.skipped if reason == "not an image suffix"}
        named = self.skipped if len(other) <= _COLLAPSE_OVER else [s for s in self.skipped if s[0] not in other]
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} files:")
            lines += [f"  {self.relative(p)}: {reason}" for p, reason in named]
            if len(named) < len(self.skipped):
                lines.append(f"  ... and {len(other)} files without an image suffix ({' '.join(IMAGE_SUFFIXES)})")
        if self.duplicates:
            kept_label = {p: self.class_names[y] for p, y in zip(self.paths, self.labels)}
            lines.append(f"Duplicates: {len(self.duplicates)} byte-identical copies dropped (dropped -> kept):")
            for dropped, kept in self.duplicates:
                own = self.conflicting_labels.get(dropped)
                why = f"  conflicting labels: {own!r} vs kept {kept_label[kept]!r}" if own is not None else ""
                lines.append(f"  {self.relative(dropped)} -> {self.relative(kept)}{why}")
        return "\n".join(lines)

    def relative(self, path: Path) -> str:
        """``path`` relative to the indexed folder when inside it (for reports)."""
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)


def index_folder(
    root: str | os.PathLike[str], *, label_regex: str | None = None, manifest: str | os.PathLike[str] | None = None
) -> FolderIndex:
    """List a folder's images, find each one's class, and drop byte-identical duplicates.

    Args:
        root: the folder of photos.
        label_regex: for files labelled by name: a regex whose group 1, searched in the file's
            stem, is the class (default :data:`DEFAULT_LABEL_REGEX`).
        manifest: a CSV with header ``path,label`` that lists the images instead (the CLI takes the
            ``.csv`` file as its data argument).

    Raises:
        ConfigError: an invalid ``label_regex``, or one that does not apply to this folder.
        DataError: no usable images, fewer than 2 classes, or a bad manifest.

    Example:
        >>> index = index_folder("weather/")  # doctest: +SKIP
        >>> index.class_counts()  # doctest: +SKIP
        {'cloudy': 300, 'rain': 214, 'shine': 253, 'sunrise': 354}
    """
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise DataError(
            f"Expected a folder of images. Received: root={os.fspath(root)!r}, which is not a folder.",
            hint="Pass the folder that holds your class sub-folders or labelled files.",
        )
    if manifest is not None and label_regex is not None:
        raise ConfigError(
            "label_regex and a manifest cannot be combined. "
            f"Received: label_regex={label_regex!r}, manifest={os.fspath(manifest)!r}.",
            hint="The manifest's label column already gives the classes; drop label_regex.", params="label_regex",
        )
    pattern = _compile_regex(label_regex)
    skipped: list[tuple[Path, str]] = []
    if manifest is not None:
        listed = read_manifest(Path(manifest).expanduser().resolve(), skipped, IMAGE_SUFFIXES)
        mode, candidates = "manifest", [_Candidate(path, label, None) for path, label in listed]
    else:
        mode, candidates = _from_tree(base, pattern, skipped)
        if label_regex is not None and mode != "filename":
            raise ConfigError(
                f"label_regex applies to files labelled by name, but {base} has class sub-folders "
                f"(label mode {mode!r}). Received: label_regex={label_regex!r}.",
                hint="Drop label_regex: each sub-folder's name is its class.", params="label_regex",
            )
    candidates.sort(key=lambda c: c.path)
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        hashes = list(pool.map(_hash_file, [c.path for c in candidates]))
    usable: list[tuple[_Candidate, str]] = []
    for cand, (digest, problem) in zip(candidates, hashes):
        if problem:
            skipped.append((cand.path, problem))
        else:
            usable.append((cand, digest))
    kept, duplicates, conflicts = _drop_duplicates(usable)
    if not kept:
        # Name one skipped image (not a stray .txt): its reason is usually the whole story.
        telling = sorted(skipped, key=lambda s: (s[1] == "not an image suffix", s[0]))
        first = f" First: {telling[0][0].name}: {telling[0][1]}." if telling else ""
        raise DataError(
            f"No images found in {base} (label mode {mode!r}): expected one sub-folder per class (rain/12.jpg), "
            f"or files named like rain12.jpg. Received: {len(skipped)} skipped files.{first}",
            hint=f"Use image files ({' '.join(IMAGE_SUFFIXES)}); set label_regex for other names, or list the "
                 "files in a CSV manifest (path,label) and pass that instead.", params="label_regex",
        )
    class_names = sorted({c.label for c, _ in kept})
    if len(class_names) < 2:
        raise DataError(
            f"Expected at least 2 classes in {base} (label mode {mode!r}). "
            f"Received: 1 class {class_names[0]!r} with {len(kept)} images.",
            hint="Put each class in its own sub-folder, or check label_regex / the manifest's labels.",
            params="label_regex",
        )
    return FolderIndex(
        root=base,
        label_mode=mode,
        class_names=class_names,
        paths=[c.path for c, _ in kept],
        labels=np.array([class_names.index(c.label) for c, _ in kept], dtype=np.int64),
        presplit=[c.split for c, _ in kept],
        sha256=[h for _, h in kept],
        skipped=sorted(skipped),
        duplicates=duplicates,
        conflicting_labels=conflicts,
    )


def _compile_regex(label_regex: str | None) -> re.Pattern[str]:
    text = DEFAULT_LABEL_REGEX if label_regex is None else label_regex
    try:
        pattern = re.compile(text)
    except (re.error, TypeError) as err:
        raise ConfigError(
            f"label_regex is not a valid regular expression ({err}). Received: label_regex={text!r}.",
            hint=f"Set label_regex to a Python regex with one group for the class, e.g. {DEFAULT_LABEL_REGEX!r}.",
            params="label_regex",
        ) from None
    if pattern.groups < 1:
        raise ConfigError(
            f"label_regex needs a capture group around the class name. Received: label_regex={text!r}.",
            hint="Wrap the class part of label_regex in parentheses, e.g. '^([a-z]+)_' for rain_12.jpg.",
            params="label_regex",
        )
    return pattern


def _walk(base: Path, skipped: list[tuple[Path, str]]) -> list[Path]:
    """Non-hidden files under ``base``, relative to it, sorted; unreadable folders go to ``skipped``."""
    def unreadable(err: OSError) -> None:
        skipped.append((Path(err.filename or base), f"unreadable: {type(err).__name__}: {err.strerror or err}"))

    found = []
    for folder, dirs, files in os.walk(base, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder).relative_to(base)
        found += [here / f for f in sorted(files) if not f.startswith(".") and f.lower() not in _SYSTEM_FILES]
    return found


def _from_tree(
    base: Path, pattern: re.Pattern[str], skipped: list[tuple[Path, str]]
) -> tuple[str, list[_Candidate]]:
    """Detect pre-split / subfolders / filename mode and label every image file under ``base``."""
    images = []
    for rel in _walk(base, skipped):
        if rel.suffix.lower() in IMAGE_SUFFIXES:
            images.append(rel)
        else:
            skipped.append((base / rel, "not an image suffix"))
    presplit = any(SPLIT_ALIASES.get(d.name.lower()) == "train" for d in base.iterdir() if d.is_dir())
    inner: dict[Path, tuple[str | None, tuple[str, ...]]] = {}  # image -> (split, parts below it, or below root)
    for rel in images:
        split = SPLIT_ALIASES.get(rel.parts[0].lower()) if len(rel.parts) > 1 else None
        if not presplit:
            inner[rel] = (None, rel.parts)
        elif split is not None:
            inner[rel] = (split, rel.parts[1:])
        else:
            skipped.append((base / rel, f"outside the {'/'.join(SPLIT_NAMES)} folders"))
    mode = "subfolders" if any(len(parts) >= 2 for _, parts in inner.values()) else "filename"
    candidates = []
    for rel, (split, parts) in inner.items():
        if mode == "subfolders":
            if len(parts) < 2:
                skipped.append((base / rel, "not in a class sub-folder (the other images are in class sub-folders)"))
                continue
            label = parts[0]
        else:
            match = pattern.search(rel.stem)
            label = match.group(1) if match and match.group(1) else ""
            if not label:
                why = f"no label: name {rel.name!r} does not match the label regex {pattern.pattern!r}"
                skipped.append((base / rel, why))
                continue
        candidates.append(_Candidate(base / rel, label, split))
    return mode, candidates


def _hash_file(path: Path) -> tuple[str, str | None]:
    """``(sha256 hex, None)``, or ``("", reason)`` when the file is empty or unreadable."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as err:
        return "", f"unreadable: {type(err).__name__}: {err.strerror or err}"
    return (digest.hexdigest(), None) if size else ("", "empty file (0 bytes)")


def _drop_duplicates(
    usable: list[tuple[_Candidate, str]],
) -> tuple[list[tuple[_Candidate, str]], list[tuple[Path, Path]], dict[Path, str]]:
    """Keep one file per hash: the first copy in ``train/`` if any, else the first in path order."""
    groups: dict[str, list[_Candidate]] = {}
    for cand, digest in usable:
        groups.setdefault(digest, []).append(cand)
    dropped: dict[Path, Path] = {}
    conflicts: dict[Path, str] = {}
    for copies in groups.values():
        keep = next((c for c in copies if c.split == "train"), copies[0])
        for c in copies:
            if c is not keep:
                dropped[c.path] = keep.path
                if c.label != keep.label:
                    conflicts[c.path] = c.label
    kept = [(c, h) for c, h in usable if c.path not in dropped]
    return kept, sorted(dropped.items()), conflicts
