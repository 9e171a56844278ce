"""The whole labelled set an audit looks at: every usable image of a folder, a manifest or an array file, with
its name, its label, its near-duplicate group, and the conflicts the files themselves show.

An audit looks at all of it, the folder's own ``test/`` images included: a wrong label in the test
split makes the reported accuracy a lie. Pixels come from the shared decoder (the pixel cache), at
the size and colour recipe auto would train at.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import datasets
from cnnkit.training.config import TrainConfig


@dataclass
class Conflict:
    """Images that are copies of one another (byte for byte, or near-duplicates) but carry different labels."""

    kind: str  # "byte copy" or "near-duplicate"
    names: list[str]  # each file, relative to the folder
    labels: list[str]  # the label each one carries
    rows: list[int] = field(default_factory=list)  # rows of the labelled set (a dropped byte copy has none)


@dataclass
class LabelledSet:
    """Every usable image with its label; ``names[i]`` says where row ``i`` came from (a path or ``test[12]``)."""

    x: np.ndarray
    y: np.ndarray
    names: list[str]
    class_names: list[str]
    color_mode: str
    resize: str
    source: str
    root: Path | None = None  # the folder, for thumbnails and relabelling (None: arrays)
    groups: list[list[int]] = field(default_factory=list)  # near-duplicate groups, rows of x
    conflicts: list[Conflict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


def load_labelled(config: TrainConfig, recipe: str, image_size: int | None, color_mode: str | None,
                  given: Any = None) -> LabelledSet:
    """Every usable image of ``config.data`` at ``image_size`` and ``color_mode`` (``None``: the data's own).

    ``given``: the data already read (:func:`cnnkit.audits.api.recipe_for`): a folder inspected, or a Dataset.
    """
    if config.is_folder:
        return _folder(config, recipe, image_size, color_mode, given)
    dataset = given if given is not None else datasets.load(config.data, source=config.data_source)
    parts = [("train", dataset.x_train, dataset.y_train), ("test", dataset.x_test, dataset.y_test)]
    if dataset.x_val is not None and dataset.y_val is not None:
        parts.insert(1, ("val", dataset.x_val, dataset.y_val))
    names = [f"{part}[{i}]" for part, _, y in parts for i in range(len(y))]
    return LabelledSet(np.concatenate([np.asarray(x) for _, x, _ in parts]),
                       np.concatenate([np.asarray(y) for _, _, y in parts]).astype(np.int64), names,
                       list(dataset.class_names), dataset.color_mode, dataset.resize, dataset.source or config.data)


def _folder(config: TrainConfig, recipe: str, image_size: int | None, color_mode: str | None,
            inspected: object) -> LabelledSet:
    from cnnkit.datasets.photos import scan_folder

    options = dataclasses.replace(config, recipe=recipe, image_size=image_size,
                                  color_mode=color_mode).resolve().folder_options()
    scanned, decoded = scan_folder(config.data, image_size=options["image_size"], color_mode=options["color_mode"],
                                   resize=options["resize"], label_regex=config.label_regex,
                                   near_duplicates="group", inspected=inspected)  # type: ignore[arg-type]
    index = scanned.index
    usable = np.flatnonzero(decoded.ok)
    row_of = {int(i): k for k, i in enumerate(usable)}
    names = [index.relative(index.paths[i]) for i in usable]
    groups = [[row_of[i] for i in group if i in row_of] for group in scanned.profile.groups]
    groups = [g for g in groups if len(g) > 1]
    labels = index.labels[usable].astype(np.int64)
    conflicts = [Conflict("near-duplicate", [names[r] for r in g], [index.class_names[labels[r]] for r in g], g)
                 for g in groups if len({int(labels[r]) for r in g}) > 1]
    kept_label = {p: index.class_names[y] for p, y in zip(index.paths, index.labels)}
    kept_row = {index.paths[i]: row_of[int(i)] for i in usable}
    for dropped, kept in index.duplicates:
        own = index.conflicting_labels.get(dropped)
        if own is not None:
            conflicts.append(Conflict("byte copy", [index.relative(dropped), index.relative(kept)],
                                      [own, kept_label[kept]], [kept_row[kept]] if kept in kept_row else []))
    return LabelledSet(np.asarray(decoded.pixels[usable]), labels, names, list(index.class_names),
                       options["color_mode"], options["resize"], str(index.root), index.root, groups, conflicts)
