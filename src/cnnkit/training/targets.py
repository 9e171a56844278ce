"""What ``evaluate`` and the pictures are pointed at: a run, a run folder, a model file, a predictor or a
Keras model, and the labelled images to score it on.

No :class:`~cnnkit.training.result.Run` import here (a Run is anything with a ``run_dir``), so the
pictures, which a Run draws, can use these without a circle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnkit import artifact, datasets
from cnnkit.datasets import Dataset
from cnnkit.datasets.given import as_dataset, is_named
from cnnkit.errors import ConfigError
from cnnkit.training.config import TrainConfig, load_data

if TYPE_CHECKING:
    from cnnkit.predictor import Predictor


def run_dir_of(target: Any) -> Path | None:
    """The run folder ``target`` is or names (a Run, a folder); None for a model file or a model in memory."""
    if hasattr(target, "run_dir"):  # a Run
        return Path(target.run_dir)
    if isinstance(target, (str, os.PathLike)):
        path = Path(target)
        artifact.resolve_model_path(path)  # a missing, unfinished or foreign path: its own error, did-you-mean
        return path if path.is_dir() else None  # a .keras file is a model, not a run folder
    return None


def predictor_for(target: Any, run_dir: Path | None, test: Dataset) -> Predictor:
    """``target`` as a Predictor; a bare Keras model takes the class names and colour mode of ``test``."""
    from cnnkit.predictor import Predictor

    if isinstance(target, Predictor):
        return target
    if hasattr(target, "run_dir") and hasattr(target, "predictor"):  # a Run
        return target.predictor()
    if run_dir is not None or isinstance(target, (str, os.PathLike)):
        return Predictor.from_artifact(run_dir or target)
    from cnnkit.models.contract import check_model

    check_model(target, test)
    metadata = artifact.ModelMetadata(class_names=list(test.class_names), input_shape=list(test.input_shape),
                                      color_mode=test.color_mode)
    return Predictor(target, metadata)


def test_set(data: Any, run_dir: Path | None) -> Dataset:
    """The labelled images ``evaluate`` scores, as a Dataset whose test split they are."""
    if data is None:
        if run_dir is None:
            raise ConfigError("Expected data to evaluate a model held in memory. Received: data=None.",
                              "Pass data as a name, a Dataset or arrays (x, y).", params="data")
        config = TrainConfig.from_run(run_dir)
        if (artifact.read_json(run_dir / artifact.CONFIG).get("request") or {}).get("in_memory"):
            raise ConfigError(f"This run trained on data held in memory ({config.data!r}), which cnnkit cannot load "
                              "again. Received: data=None.", "Pass the data: evaluate(run, data).", params="data")
        return load_data(config.resolve())
    if is_named(data):
        options = TrainConfig.from_run(run_dir).resolve().folder_options() if run_dir else {}
        return datasets.load(data, **(options if Path(data).is_dir() or os.fspath(data).endswith(".csv") else {}))
    if isinstance(data, Dataset):
        return data
    pairs = ((data[0], data[1]), (data[0], data[1])) if _is_pair(data) else data  # (x, y): every image is scored
    return as_dataset(pairs)


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and hasattr(data[0], "shape")
