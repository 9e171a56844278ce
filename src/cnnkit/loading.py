"""``cnnkit.load``: one entry point for every saved-model form cnnkit writes."""

from __future__ import annotations

import os
from pathlib import Path

from cnnkit.exporting import import_json_h5
from cnnkit.predictor import Predictor


def load(path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None, tta: bool = True) -> Predictor:
    """Load a run folder, a ``.keras`` file, or an architecture ``.json`` (+ weights) into a Predictor.

    ``tta=False`` predicts from one view even where the model's recipe asks for test-time
    augmentation (:mod:`cnnkit.tta`).

    Example:
        >>> cnnkit.load("export/model.json").class_names  # doctest: +SKIP
        ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        model, metadata = import_json_h5(path, weights)
        return Predictor(model, metadata, tta=tta)
    return Predictor.from_artifact(path, tta=tta)
