"""Batch prediction: label every image in a set of files and folders, one CSV row per file.

Decoding (the shared :func:`cnnkit.images.decode_image`) runs on a thread pool
(Pillow releases the GIL while decoding), inference runs in fixed-size batches,
and a file that cannot be decoded becomes a row with its error instead of
stopping the job.
"""

from __future__ import annotations

import csv
import functools
import io
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError, DataError
from cnnkit.fileio import write_text
from cnnkit.images import IMAGE_SUFFIXES
from cnnkit.predictor import Prediction, Predictor

CSV_FIELDS = ["path", "label", "probability", "top_k", "error"]


@dataclass
class FileResult:
    """One file's answer: a prediction, or the reason it could not be read."""

    path: Path
    prediction: Prediction | None
    error: str = ""
    warning: str = ""  # how the image differs from the model's training images (Predictor.mismatch); not in the CSV

    def row(self) -> dict[str, str]:
        """The file's CSV row."""
        p = self.prediction
        if p is None:
            return {"path": str(self.path), "label": "", "probability": "", "top_k": "", "error": self.error}
        return {"path": str(self.path), "label": p.label, "probability": f"{p.probability:.6f}",
                "top_k": ";".join(f"{label}:{prob:.6f}" for label, prob in p.top_k), "error": ""}


@dataclass
class BatchResult:
    """What a batch job did: one result per file, in input order, and where the CSV is."""

    files: list[FileResult]
    out: Path | None
    trained_on: str = ""  # the model's training images in a few words (Predictor.describe_training)

    @property
    def failed(self) -> int:
        return sum(1 for f in self.files if f.prediction is None)

    def warning(self) -> str:
        """One line about the images far from the model's training images (``""`` when none is)."""
        odd = [f for f in self.files if f.warning and f.prediction is not None]
        if not odd:
            return ""
        colour = sum(f.warning == "a colour image" for f in odd)
        what = "; ".join(text for n, text in ((colour, f"{colour} colour image{'s' if colour != 1 else ''}"),
                                              (len(odd) - colour, f"{len(odd) - colour} at another size")) if n)
        examples = ", ".join(f"{f.path.name} ({f.warning})" for f in odd[:3])
        return (f"{len(odd)} of {len(self.files)} images are far from what the model was trained on "
                f"({self.trained_on}): {what}, e.g. {examples}. Its answers for them are likely meaningless.")


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, plus the image files under each folder (sorted, recursive, hidden ones skipped)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(item).parts))
            paths.extend(found)
        else:
            paths.append(item)  # a missing or odd file becomes an error row, not a crash
    if not paths:
        raise DataError(f"No image files found. Received: {', '.join(map(str, inputs))}.",
                        f"Pass image files or folders holding {', '.join(IMAGE_SUFFIXES)} files.")
    return paths


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def decode_file(predictor: Predictor, path: str | os.PathLike[str]) -> tuple[np.ndarray | None, str, str]:
    """``(pixels, "", warning)`` as the model wants them, or ``(None, reason, "")`` (never raises for bad files)."""
    try:
        pixels, warning = predictor.decode_with_warning(path)
    except CnnkitError as exc:
        return None, exc.message, ""
    return pixels, "", warning


def predict_chunk(predictor: Predictor, paths: Sequence[Path], *, top_k: int = 3,
                  pool: ThreadPoolExecutor | None = None) -> list[FileResult]:
    """Decode ``paths`` (on ``pool`` when given) and predict the good ones in one go; one result per path, in order.

    Shared by :func:`predict_paths` and the Ray engine (:mod:`cnnkit.batch_ray`), so both give the same rows.
    """
    decode = functools.partial(decode_file, predictor)
    decoded = list(pool.map(decode, paths) if pool is not None else map(decode, paths))
    good = [pixels for pixels, _, _ in decoded if pixels is not None]
    predictions = iter(predictor.predict(np.stack(good), top_k=top_k) if good else [])
    return [FileResult(Path(path), next(predictions) if pixels is not None else None, error, warning)
            for path, (pixels, error, warning) in zip(paths, decoded)]


def write_csv(out: str | Path, files: Sequence[FileResult]) -> None:
    """Write one row per file (:data:`CSV_FIELDS`) atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(f.row() for f in files)
    write_text(out, buffer.getvalue())


def predict_paths(predictor: Predictor, inputs: Sequence[str | os.PathLike[str]], *, out: str | Path | None = None,
                  top_k: int = 3, batch_size: int = 256, workers: int | None = None,
                  progress: bool = True) -> BatchResult:
    """Predict every image under ``inputs``; write ``out`` (CSV) atomically when given.

    Example:
        >>> predict_paths(cnnkit.load("runs/a"), ["photos/"], out="predictions.csv")  # doctest: +SKIP
    """
    paths = expand_inputs(inputs)
    bar = None
    if progress:
        from cnnkit._backend import keras

        bar = keras.utils.Progbar(len(paths), unit_name="image")
    results: list[FileResult] = []
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for chunk in _chunks(paths, batch_size):
            results.extend(predict_chunk(predictor, chunk, top_k=top_k, pool=pool))
            if bar is not None:
                bar.add(len(chunk))
    if out is not None:
        write_csv(out, results)
    return BatchResult(files=results, out=Path(out) if out else None, trained_on=predictor.describe_training())
