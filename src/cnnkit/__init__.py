"""cnnkit: build, train, understand and deploy convolutional image classifiers (Keras 3).

The public API mirrors the command line::

    import cnnkit
    data = cnnkit.load_dataset("mnist")                 # uint8 pixels + class names
    model = cnnkit.build_model("article-004")           # preprocessing inside the model
    result = cnnkit.train(cnnkit.TrainConfig(preset="fast"), "runs/demo")
    predictor = cnnkit.load("runs/demo")                # a run folder, .keras file, or model.json
    predictor.predict(data.x_test[:5])

Attributes are imported on first use, so ``import cnnkit`` (and ``cnnkit --help``)
stays fast until Keras is actually needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_dataset": ("cnnkit.datasets", "load"),
    "build_model": ("cnnkit.models", "build_model"),
    "TrainConfig": ("cnnkit.training.config", "TrainConfig"),
    "train": ("cnnkit.training.run", "train"),
    "evaluate": ("cnnkit.training.run", "evaluate"),
    "load": ("cnnkit.loading", "load"),
    "Predictor": ("cnnkit.predictor", "Predictor"),
    "export": ("cnnkit.exporting", "export_model"),
    "get_preset": ("cnnkit.presets", "get_preset"),
    "PRESETS": ("cnnkit.presets", "PRESETS"),
    "decode_image": ("cnnkit.images", "decode_image"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
