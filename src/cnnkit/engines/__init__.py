"""Engines: the one way cnnkit calls a model (uint8 NHWC pixels in, float32 probabilities out).

The :class:`~cnnkit.predictor.Predictor` (evaluation, ``cnnkit predict``), batch prediction (local
and on Ray) and the server's micro-batcher all reach the model through one :class:`Engine`, made by
:func:`build_engine`; test-time augmentation is applied there, once, around whichever engine runs.

:data:`ENGINES` is the one table of engine names (``cnnkit serve --engine`` offers them); the engine
classes, which import Keras or ONNX Runtime, load only when one is made.

Example:
    >>> sorted(ENGINES)
    ['keras', 'onnxruntime']
    >>> engine = build_engine(model, tta={"shift": 1})  # doctest: +SKIP
    >>> engine(pixels).shape  # doctest: +SKIP
    (16, 10)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cnnkit._lazy import attach
from cnnkit.engines.base import Averaged as Averaged
from cnnkit.engines.base import Engine, with_tta
from cnnkit.errors import ConfigError

if TYPE_CHECKING:
    from cnnkit.engines.keras import KerasEngine as KerasEngine
    from cnnkit.engines.onnx import OnnxEngine as OnnxEngine

_CLASSES = {"KerasEngine": "cnnkit.engines.keras", "OnnxEngine": "cnnkit.engines.onnx"}
__getattr__, __dir__, __all__ = attach(__name__, _CLASSES, eager=("ENGINES", "Averaged", "Engine", "build_engine",
                                                                  "with_tta"))


def _maker(class_name: str) -> Callable[[Any], Engine]:
    """Make a ``class_name`` engine from a Keras model, importing its module only then."""

    def make(model: Any) -> Engine:
        engine_class: type[Engine] = getattr(importlib.import_module(_CLASSES[class_name]), class_name)
        return engine_class(model)  # type: ignore[call-arg]

    make.__name__ = class_name
    return make


# Every engine by name: what makes one from a Keras model. The tests check each against Keras;
# cnnkit.engines.choice picks among them (`cnnkit serve --engine auto`).
ENGINES: dict[str, Callable[[Any], Engine]] = {"keras": _maker("KerasEngine"), "onnxruntime": _maker("OnnxEngine")}


def build_engine(model: Any, *, tta: dict[str, Any] | None = None, kind: str = "keras") -> Engine:
    """The ``kind`` engine for ``model``, averaged over the views of ``tta`` (``None`` or ``{}``: one view)."""
    if kind not in ENGINES:
        raise ConfigError(f"Unknown engine. Expected one of {sorted(ENGINES)}. Received: engine={kind!r}.",
                          params="engine")
    return with_tta(ENGINES[kind](model), tta or {})
