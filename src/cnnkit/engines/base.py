"""What every engine is: raw ``uint8`` NHWC pixels in, ``float32`` class probabilities out.

An engine is the one way cnnkit calls a model. The Predictor (evaluation, ``cnnkit predict``),
batch prediction (local and on Ray) and the server's micro-batcher all hold one, so they cannot
disagree about how a model is called, and test-time augmentation (:mod:`cnnkit.tta`) is applied
in one place: :class:`Averaged`, around any engine.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnkit.tta import num_views, views


class Engine(abc.ABC):
    """A compiled model call: ``engine(pixels)`` with ``pixels`` ``uint8 (N, H, W, C)`` gives ``float32 (N, K)``.

    Attributes:
        name: what runs the model, for logs and ``/v1/models`` (``"keras"``).
        input_shape: ``(H, W, C)`` of one image.
    """

    name: str = "engine"
    input_shape: tuple[int, ...]

    @abc.abstractmethod
    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of raw pixels (any batch size, 0 included)."""

    def warmup(self, batch_sizes: Iterable[int]) -> None:
        """Run each batch size once on zeros, so that no caller pays for tracing or compiling."""
        for size in batch_sizes:
            self(np.zeros((size, *self.input_shape), dtype=np.uint8))

    def describe(self) -> dict[str, Any]:
        """What ``/v1/models`` and the server metadata say about the engine."""
        return {"name": self.name}


class Averaged(Engine):
    """``engine`` with test-time augmentation: each image's probabilities averaged over the views of ``spec``."""

    def __init__(self, engine: Engine, spec: dict[str, Any]) -> None:
        self.engine, self.spec = engine, dict(spec)
        self.name, self.input_shape = engine.name, engine.input_shape
        self.views = num_views(self.spec)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        n = len(pixels)
        if n == 0:
            return self.engine(pixels)
        probs = np.asarray(self.engine(views(pixels, self.spec)), dtype=np.float32)
        return probs.reshape(self.views, n, -1).mean(axis=0)

    def describe(self) -> dict[str, Any]:
        return {**self.engine.describe(), "tta": self.spec}


def with_tta(engine: Engine, spec: dict[str, Any]) -> Engine:
    """``engine`` averaged over the views of ``spec``; the engine itself when the spec asks for one view."""
    return Averaged(engine, spec) if num_views(spec) > 1 else engine
