"""The one place that imports Keras (quietly, once) and knows which backend runs.

cnnkit's modules that need Keras write ``from cnnkit._backend import keras``; modules that do
not (the CLI's parser, configs, presets) never import this one, so ``cnnkit --help`` and
``cnnkit summary --list`` start without loading TensorFlow.

Every branch on the backend lives here too: which compiles with XLA, where bfloat16 is fast, how a
model is compiled for prediction, how a gradient is taken.

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
import logging
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.errors import ConfigError

__all__ = ["PREDICT_PIXELS", "BaseImagePreprocessingLayer", "Functional", "bfloat16_is_fast", "compiled_predict",
           "gradient", "jit_compile", "keras", "keras_home", "name", "rows_per_call"]


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
if TYPE_CHECKING:  # the type checker reads Keras itself: keras.Model is a type there
    import keras
else:
    keras = _quiet_import("keras")
if keras.backend.backend() != "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
    _quiet_import("tensorflow")  # Keras imports it later for tf.data; load it now, quietly


class _NewModelsAreNotRetraces(logging.Filter):
    """Drop TensorFlow's "N out of the last M calls to <function ...multi_step_on_iterator> triggered tf.function
    retracing" warning.

    TensorFlow counts traces by the function's code, and every Keras model's train and test functions are
    closures of one function (``TensorFlowTrainer._make_function``'s ``multi_step_on_iterator``). A run that
    builds a throwaway model to time its budget (two, when auto also times a photo side), or a search that
    trains candidates, traces each new model once, and the fifth first trace in a process reads as a
    retrace. No function of a model is traced again from epoch to epoch (tests/test_training.py counts them),
    so the warning names nothing a user could change.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NewModelsAreNotRetraces())

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


def keras_home() -> str:
    """Keras' own folder (``$KERAS_HOME`` when Keras was imported, else ``~/.keras`` or its fallback)."""
    from keras.src.backend.config import keras_home as home  # not exported; keras is pinned in pyproject.toml

    return home()


def bfloat16_is_fast() -> bool:
    """True where bfloat16 matrix arithmetic is in hardware for this backend.

    Checked: TensorFlow on x86 CPUs with AMX or AVX-512 BF16 (oneDNN uses them); elsewhere
    (older CPUs, where bfloat16 is emulated and slower, or XLA on CPU) False.
    """
    if name() != "tensorflow":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def jit_compile() -> bool | str:
    """``model.compile``'s ``jit_compile``: off on TensorFlow, Keras' choice elsewhere.

    XLA ran these small convnets slower on the 2-core CPU (benchmarks/RESULTS.md, benchmarks/xla.py);
    JAX always compiles.
    """
    return False if name() == "tensorflow" else "auto"


# The most pixels one model call takes (40 photos at 160x160, 1,337 digits at 28x28): a call's activations grow
# with its pixels. The weather photos' test set with its flipped views, 438 images at 160x160 for the photo recipe,
# took 2.1 GB above the model in one call, 0.3 GB in calls of 40, for about 5 % more time (1.85 s against 1.77 s),
# and a 2-epoch run at 160 px peaked at 1.9 GB instead of 2.8 GB. A batch of 256 digits with its 5 views stays
# one call.
PREDICT_PIXELS = 1 << 20


def rows_per_call(image_shape: tuple[int, ...]) -> int:
    """How many images of ``image_shape`` ``(H, W, C)`` one model call takes: :data:`PREDICT_PIXELS`, at least 1."""
    return max(1, PREDICT_PIXELS // (int(image_shape[0]) * int(image_shape[1])))


def compiled_predict(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``model`` as a ``uint8 (N, H, W, C) -> float32 (N, K)`` function compiled once for every batch size.

    TensorFlow: a ``tf.function`` traced for the signature ``[None, H, W, C] uint8``. Other backends:
    ``predict_on_batch`` (compiled by Keras) on batches padded to a power of two, so a JIT backend
    compiles a handful of shapes rather than one per batch size. Both run the model with ``training=False``,
    on at most :func:`rows_per_call` images at a time, so memory does not grow with ``N``.
    """
    rows = rows_per_call(model.input_shape[1:])
    if name() == "tensorflow":
        import tensorflow as tf

        signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.uint8, name="pixels")]

        @tf.function(input_signature=signature)  # one trace serves every batch size
        def forward(pixels: Any) -> Any:
            return tf.cast(model(pixels, training=False), tf.float32)

        return _in_slices(lambda pixels: forward(tf.convert_to_tensor(pixels, dtype=tf.uint8)).numpy(), rows)

    def padded(pixels: np.ndarray) -> np.ndarray:
        n = len(pixels)
        size = 1 << max(0, (n - 1).bit_length())  # next power of two: few distinct shapes to compile
        if size != n:
            pixels = np.concatenate([pixels, np.zeros((size - n, *pixels.shape[1:]), pixels.dtype)])
        return np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(pixels)), dtype=np.float32)[:n]

    return _in_slices(padded, 1 << (rows.bit_length() - 1))  # a power of two: full slices need no padding


def _in_slices(call: Callable[[np.ndarray], np.ndarray], rows: int) -> Callable[[np.ndarray], np.ndarray]:
    """``call`` on ``rows`` images at a time, the answers joined in order."""
    def sliced(pixels: np.ndarray) -> np.ndarray:
        if len(pixels) <= rows:
            return call(pixels)
        return np.concatenate([call(pixels[start:start + rows]) for start in range(0, len(pixels), rows)])

    return sliced


def gradient(fn: Callable[[Any], Any], x: Any) -> Any:
    """Gradient of the scalar ``fn(x)`` with respect to ``x``: the one backend-specific step."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            score = fn(x)
        return tape.gradient(score, x)
    if backend == "jax":
        import jax

        return jax.grad(fn)(x)
    if backend == "torch":
        import torch

        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(fn(x), x)
        return grad
    raise ConfigError(
        f"Grad-CAM needs gradients. Expected backend tensorflow, jax or torch. Received: backend={backend!r}.",
        "Set KERAS_BACKEND to one of them.",
    )
