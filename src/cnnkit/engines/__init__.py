"""Engines: the one way cnnkit calls a model (uint8 NHWC pixels in, float32 probabilities out).

The :class:`~cnnkit.predictor.Predictor` (evaluation, ``cnnkit predict``), batch prediction (local
and on Ray) and the server's micro-batcher all reach the model through one :class:`Engine`, made by
:func:`build_engine`; test-time augmentation is applied there, once, around whichever engine runs.

Example:
    >>> engine = build_engine(model, tta={"shift": 1})  # doctest: +SKIP
    >>> engine(pixels).shape  # doctest: +SKIP
    (16, 10)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnkit.engines.base import Averaged, Engine, with_tta
from cnnkit.engines.keras import KerasEngine
from cnnkit.engines.onnx import OnnxEngine
from cnnkit.errors import ConfigError

__all__ = ["ENGINES", "Averaged", "Engine", "KerasEngine", "OnnxEngine", "build_engine", "with_tta"]

# Every engine by name: what makes one from a Keras model. The tests check each against Keras;
# cnnkit.engines.choice picks among them (`cnnkit serve --engine auto`).
ENGINES: dict[str, Callable[[Any], Engine]] = {"keras": KerasEngine, "onnxruntime": OnnxEngine}


def build_engine(model: Any, *, tta: dict[str, Any] | None = None, kind: str = "keras") -> Engine:
    """The ``kind`` engine for ``model``, averaged over the views of ``tta`` (``None`` or ``{}``: one view)."""
    if kind not in ENGINES:
        raise ConfigError(f"Unknown engine. Expected one of {sorted(ENGINES)}. Received: engine={kind!r}.",
                          params="engine")
    return with_tta(ENGINES[kind](model), tta or {})
