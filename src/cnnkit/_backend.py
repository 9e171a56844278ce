"""The one place that imports Keras: quietly, once, and on the backend the user chose.

cnnkit's modules that need Keras write ``from cnnkit._backend import keras``; modules that do
not (the CLI's parser, configs, presets) never import this one, so ``cnnkit --help`` and
``cnnkit summary --list`` start without loading TensorFlow.

Why quietly: TensorFlow 2.21 writes absl INFO lines ("oneDNN custom operations are on",
"All log messages before absl::InitializeLog() ...") straight to file descriptor 2 while its
shared libraries load, before ``TF_CPP_MIN_LOG_LEVEL`` takes effect. On the JAX and torch
backends Keras still imports TensorFlow later, for ``tf.data`` inside ``fit``, and the same
lines appeared mid-training; so there TensorFlow is imported here too, under the same guard.
``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (warnings and errors hidden); a user who sets it to 0 or
1 sees everything, as TensorFlow intends. Python errors raised by an import still propagate.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType


def _quiet_import(name: str) -> ModuleType:
    """Import ``name`` with file descriptor 2 pointed at /dev/null while it loads."""
    if name in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") < "2":
        return importlib.import_module(name)
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        return importlib.import_module(name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = _quiet_import("keras")
if keras.backend.backend() != "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
    _quiet_import("tensorflow")  # Keras imports it later for tf.data; load it now, quietly

# Two classes Keras does not export, needed to tell a model's graph and its augmentation layers
# apart (cnnkit.models.inference_model). keras is pinned in pyproject.toml; tests/test_export.py
# fails loudly should either move.
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E402
    BaseImagePreprocessingLayer,
)
from keras.src.models.functional import Functional  # noqa: E402


def name() -> str:
    """The Keras backend in use: ``"tensorflow"``, ``"jax"``, ``"torch"`` or ``"numpy"``."""
    return keras.backend.backend()
