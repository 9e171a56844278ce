"""Look before training: dataset shapes, class counts and sample grids; model summaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import datasets
from cnnkit.datasets.lazy import take_rows
from cnnkit.errors import ConfigError
from cnnkit.fileio import write_bytes
from cnnkit.images import encode_png
from cnnkit.plots import plot_image_grid
from cnnkit.presets import PRESETS, Preset, as_preset

PHOTO_SIZE = PRESETS["photo"].input_shape[:2]  # what `cnnkit train` decodes a folder at by default


def classes_in_turn(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Indices ordered so the classes take turns: first of class 0, first of class 1, …, second of class 0 …"""
    labels = np.asarray(labels)
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in range(num_classes):
        rank[labels == c] = np.arange(int((labels == c).sum()))
    return np.lexsort((labels, rank))


def _title_prefix(name: str) -> str:
    return "Digit" if name == "mnist" else "Label"


def show(data: str, *, out: str | Path | None = None, source: str | None = None, count: int = 9,
         split: str = "train", save_images: str | Path | None = None, **folder_options: Any) -> str:
    """Describe a dataset and write a grid of the first ``count`` images of ``split``.

    Titles read "Digit: 5" for MNIST (as in the articles), "Label: rain" otherwise.
    Returns the text printed by ``cnnkit show``.
    """
    dataset = datasets.load(data, source=source, **folder_options)
    out = Path(out) if out else Path("runs") / f"samples-{Path(data).stem or 'data'}.png"  # beside the runs
    x, y = draw_samples(dataset, out, count=count, split=split)
    n = len(y)
    lines = [dataset.report] if dataset.report else []
    lines += [
        f"Dataset: {dataset.name} ({dataset.source or data})",
        f"x_train {dataset.x_train.shape} {dataset.x_train.dtype}, y_train {dataset.y_train.shape}",
        f"x_test  {dataset.x_test.shape} {dataset.x_test.dtype}, y_test  {dataset.y_test.shape}",
        f"Colour mode: {dataset.color_mode}; {dataset.num_classes} classes",
    ]
    parts = {"train": dataset.y_train, "val": dataset.y_val, "test": dataset.y_test}
    counts = {k: np.bincount(v, minlength=dataset.num_classes) for k, v in parts.items() if v is not None}
    lines.append(f"{'class':>12} " + " ".join(f"{k:>7}" for k in counts) + f" {'total':>7}")
    for i, name in enumerate(dataset.class_names):
        row = [int(c[i]) for c in counts.values()]
        lines.append(f"{name:>12} " + " ".join(f"{n:>7}" for n in row) + f" {sum(row):>7}")
    lines.append(f"Sample grid: {out}")
    if save_images:
        folder = Path(save_images)
        for i in range(n):
            write_bytes(folder / f"{split}-{i:04d}-{dataset.class_names[y[i]]}.png", encode_png(x[i]))
        lines.append(f"Wrote {n} PNG files to {folder}")
    return "\n".join(lines)


def draw_samples(dataset: datasets.Dataset, path: str | Path, *, count: int = 9,
                 split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Draw the first ``count`` images of ``split`` to the PNG ``path``; return those images and labels.

    Titles read "Digit: 5" for MNIST (as in the articles), "Label: rain" otherwise; a photo folder, sorted
    by class, shows its classes in turn.
    """
    if count < 1:
        raise ConfigError(f"Expected count ≥ 1. Received: count={count}.", "Set count to 1 or more.", params="count")
    if split not in ("train", "test"):
        raise ConfigError(f"Expected split 'train' or 'test'. Received: split={split!r}.", params="split")
    x, y = (dataset.x_train, dataset.y_train) if split == "train" else (dataset.x_test, dataset.y_test)
    n = min(count, len(x))
    if dataset.report:  # a photo folder is sorted by class: show the classes in turn instead
        order = classes_in_turn(y, dataset.num_classes)[:n]
    else:  # the articles show the first images ("Digit: 5" first)
        order = np.arange(n)
    x, y = take_rows(x, order), y[order]
    titles = [f"{_title_prefix(dataset.name)}: {dataset.class_names[label]}" for label in y]
    plot_image_grid(x, titles, path, ncols=min(n, 3 if n <= 9 else 5))
    return x, y


def summarize(target: str | Preset) -> str:
    """Keras' ``model.summary()`` for a recipe (or its name) or a run folder, with the recipe's description.

    ``"list"`` lists every built-in recipe with its parameter count and description.
    """
    if target == "list":
        return "\n".join(f"{p.name:<12} {p.params:>10,} params  {p.description}" for p in PRESETS.values())
    from cnnkit.models import build_model

    if isinstance(target, str) and Path(target).exists():
        from cnnkit.artifact import load_model

        model, meta = load_model(target)
        header = f"Model from {target}: classes {meta.class_names}, input {meta.input_shape} ({meta.color_mode})"
    else:
        preset = as_preset(target)
        model = build_model(preset)
        header = f"{preset.name}: {preset.description}"
    lines: list[str] = []
    model.summary(line_length=80, print_fn=lambda text, **_: lines.append(text))
    return f"{header}\n" + "\n".join(lines).rstrip()


def verify(data: str, **folder_options: Any) -> tuple[str, int]:
    """Index, profile and decode a folder without training; return the report and how many files were unusable.

    The report lists every file that cannot be used and why, the folder's profile (native sizes,
    colour modes, class balance) and its near-duplicate groups.
    """
    from cnnkit.datasets.photos import decode_report, near_duplicates_report, scan_folder

    inspected, decoded = scan_folder(data, image_size=folder_options.get("image_size") or PHOTO_SIZE,
                                     color_mode=folder_options.get("color_mode", "rgb"),
                                     resize=folder_options.get("resize", "stretch"),
                                     label_regex=folder_options.get("label_regex"),
                                     near_duplicates=folder_options.get("near_duplicates", "group"),
                                     inspected=folder_options.get("inspected"))
    index, profile = inspected.index, inspected.profile
    bad = len(index.skipped) + len(decoded.errors)
    lines = [index.report(), *profile.lines(), decode_report(index, decoded),
             near_duplicates_report(index, profile.groups, "training keeps each group in one split"),
             f"{bad} unusable files."]
    return "\n".join(lines), bad
