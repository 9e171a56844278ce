"""HTTP serving for a trained model: ``create_app(predictor, settings)`` and ``cnnkit serve``.

Starlette and uvicorn are the optional ``serve`` extra (``pip install cnnkit[serve]``);
they are imported on first use, so ``cnnkit --help`` never needs them.

Example:
    >>> from cnnkit.server import ServerSettings, create_app  # doctest: +SKIP
    >>> app = create_app(cnnkit.load("runs/demo"), ServerSettings(max_batch_size=16))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_app": ("cnnkit.server.app", "create_app"),
    "ServerSettings": ("cnnkit.server.settings", "ServerSettings"),
    "MicroBatcher": ("cnnkit.server.batcher", "MicroBatcher"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cnnkit.server' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
