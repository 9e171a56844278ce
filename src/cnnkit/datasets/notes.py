"""What loading a folder found beside its images, kept as data for the report to show: files skipped and why,
byte-identical copies, near-duplicate groups, and images left out (``exclude``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FolderNotes:
    """Paths are relative to ``root`` (the folder, or a manifest's folder) where they are inside it."""

    root: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    copies: list[tuple[str, str, str, str]] = field(default_factory=list)  # (dropped, kept, its label, kept's)
    groups: list[list[tuple[str, str]]] = field(default_factory=list)  # near-duplicates: [(path, label), ...]
    group_action: str = ""  # what was done with each group ("each kept whole in one split", ...)
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def folder_notes(index: Any, groups: list[list[int]], group_action: str,
                 excluded: list[tuple[Path, str]]) -> FolderNotes:
    """The notes of a :class:`~cnnkit.datasets.folder.FolderIndex` (``groups``: indices into its paths)."""
    names = index.class_names
    kept_label = {p: names[y] for p, y in zip(index.paths, index.labels)}
    return FolderNotes(
        root=index.root,
        skipped=[(index.relative(p), why) for p, why in index.skipped],
        copies=[(index.relative(d), index.relative(k), index.conflicting_labels.get(d, kept_label[k]), kept_label[k])
                for d, k in index.duplicates],
        groups=[[(index.relative(index.paths[i]), names[index.labels[i]]) for i in g] for g in groups],
        group_action=group_action,
        excluded=[(index.relative(p), why) for p, why in excluded],
    )
