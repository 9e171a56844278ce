"""A CSV manifest (``path,label``, or the column names other tools use) as labelled image paths."""

from __future__ import annotations

import csv
from pathlib import Path

from cnnkit.errors import DataError

# A manifest's column names (lower case), preferred first: 'path,label', or as other tools write them.
PATH_COLUMNS = ("path", "filepath", "file_path", "image_path", "filename", "file", "image")
LABEL_COLUMNS = ("label", "class", "class_name", "category", "target")


def read_manifest(manifest: Path, skipped: list[tuple[Path, str]],
                  suffixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """``(absolute path, label)`` for every usable row of a CSV manifest; the others go to ``skipped`` with why.

    Paths are relative to the manifest's folder. A row is skipped when its file is missing, listed
    twice, without one of ``suffixes`` or without a label.

    Raises:
        DataError: the file cannot be read, or its header names no path or no label column.
    """
    hint = "Write a CSV whose first line is 'path,label', then one image per line (e.g. 'rain/12.jpg,rain')."
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a BOM
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader, [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(
            f"Cannot read the manifest {manifest}. Received: {type(err).__name__}: {err}.", hint=hint
        ) from None
    col_path, col_label = find_column(header, PATH_COLUMNS), find_column(header, LABEL_COLUMNS)
    if col_path is None or col_label is None:
        raise DataError(
            f"Expected the manifest {manifest} to start with the header 'path,label'. Received: {','.join(header)!r}.",
            hint=f"{hint} Also understood: {', '.join(PATH_COLUMNS[1:])} for the path and "
                 f"{', '.join(LABEL_COLUMNS[1:])} for the label.",
        )
    seen: dict[Path, int] = {}
    candidates: list[tuple[Path, str]] = []
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = row + [""] * (len(header) - len(row))
        path = (manifest.parent / cells[col_path].strip()).resolve()
        label = cells[col_label].strip()
        where = f"{manifest.name} line {line}"
        if path in seen:
            skipped.append((path, f"listed twice in {manifest.name} (lines {seen[path]} and {line})"))
        elif not path.is_file():
            skipped.append((path, f"missing: listed in {where} but not found"))
        elif path.suffix.lower() not in suffixes:
            skipped.append((path, "not an image suffix"))
        elif not label:
            skipped.append((path, f"no label: empty label in {where}"))
        else:
            candidates.append((path, label))
        seen.setdefault(path, line)
    return candidates


def find_column(header: list[str], names: tuple[str, ...]) -> int | None:
    """Index of the first of ``names`` (in their order of preference) that the header has."""
    return next((header.index(name) for name in names if name in header), None)
