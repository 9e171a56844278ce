"""``exclude``: images a CSV lists (an audit's ``suspects.csv``, or any file with a ``path`` column) left out of a
folder's training, validation and test images, with a line in the data report that says how many and why."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import DataError


def read_listed(listing: str | os.PathLike[str]) -> dict[str, str]:
    """Path as written -> why (the row's ``finding``, or "listed") for every row of ``listing`` not decided ``keep``."""
    listing = Path(listing)
    try:
        text = listing.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise DataError(f"Cannot read the list of images to exclude. Received: exclude={os.fspath(listing)!r} "
                        f"({err.strerror or err}).", "Pass an audit's suspects.csv, or a CSV with a path column.",
                        params="exclude") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower(): c for c in reader.fieldnames or []}
    if "path" not in columns:
        raise DataError(f"Expected a CSV with a path column to exclude images by. Received: columns "
                        f"{', '.join(columns) or 'none'} in {listing}.",
                        "Pass an audit's suspects.csv, or a CSV whose header has path.", params="exclude")
    out: dict[str, str] = {}
    for row in reader:
        cells = {key: (row.get(original) or "").strip() for key, original in columns.items()}
        if not cells["path"] or cells.get("decision", "").lower() == "keep":
            continue
        out.setdefault(cells["path"], cells.get("finding") or "listed")
    return out


def read_excluded(listing: str | os.PathLike[str], root: Path) -> dict[Path, str]:
    """:func:`read_listed` with each path made absolute: relative to ``root`` (the folder, or the manifest's
    folder), as an audit writes them, or absolute already."""
    listed: dict[Path, str] = {}
    for path, why in read_listed(listing).items():
        listed.setdefault((root / path).resolve(), why)
    return listed


def excluded_report(listing: str | os.PathLike[str], why: list[str], missing: int) -> str:
    """One line: how many images were left out, for which findings, and how many listed paths were not found.

    Example:
        >>> excluded_report("audit/suspects.csv", ["label", "label", "stray"], 1)
        'Excluded: 3 images listed in audit/suspects.csv (label 2, stray 1); 1 listed path not among the images.'
    """
    counts = ", ".join(f"{finding} {n}" for finding, n in sorted(Counter(why).items(), key=lambda kv: -kv[1]))
    line = f"Excluded: {len(why)} image{'s' * (len(why) != 1)} listed in {os.fspath(listing)}" + (
        f" ({counts})" if counts else "")
    if missing:
        line += f"; {missing} listed path{'s' * (missing != 1)} not among the images"
    return line + "."


def exclude_rows(dataset: Any, listing: str | os.PathLike[str]) -> Any:
    """``dataset`` (arrays: MNIST, an ``.npz``) without the rows ``listing`` names as an audit names them
    (``train[12]``, ``val[3]``, ``test[5]``), with the :func:`excluded_report` line as its report."""
    wanted: dict[str, dict[int, str]] = {"train": {}, "val": {}, "test": {}}
    unknown = 0
    for name, finding in read_listed(listing).items():
        match = re.fullmatch(r"(train|val|test)\[(\d+)\]", name)
        if match:
            wanted[match[1]][int(match[2])] = finding
        else:
            unknown += 1
    parts: dict[str, Any] = {}
    why: list[str] = []
    for part, rows in wanted.items():
        x, y = getattr(dataset, f"x_{part}"), getattr(dataset, f"y_{part}")
        if not rows or x is None:
            unknown += len(rows)
            continue
        inside = {r: w for r, w in rows.items() if r < len(y)}
        unknown += len(rows) - len(inside)
        keep = np.setdiff1d(np.arange(len(y)), np.fromiter(inside, dtype=np.int64))
        parts[f"x_{part}"], parts[f"y_{part}"] = x[keep], y[keep]
        why += list(inside.values())
    report = excluded_report(listing, why, unknown)
    return dataclasses.replace(dataset, **parts, report="\n".join(filter(None, [dataset.report, report])))
