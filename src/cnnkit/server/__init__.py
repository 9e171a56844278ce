"""HTTP serving for a trained model: ``create_app(predictor, settings)`` and ``cnnkit serve``.

Starlette and uvicorn are the optional ``serve`` extra (``pip install cnnkit[serve]``);
they are imported on first use, so ``cnnkit --help`` never needs them.

Example:
    >>> from cnnkit.server import ServerSettings, create_app  # doctest: +SKIP
    >>> app = create_app(cnnkit.load("runs/demo"), ServerSettings(max_batch_size=16))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnkit._lazy import attach

if TYPE_CHECKING:
    from cnnkit.server.app import create_app as create_app
    from cnnkit.server.background import Serving as Serving
    from cnnkit.server.background import serve as serve
    from cnnkit.server.batcher import MicroBatcher as MicroBatcher
    from cnnkit.server.settings import ServerSettings as ServerSettings

__getattr__, __dir__, __all__ = attach(__name__, {
    "create_app": "cnnkit.server.app", "ServerSettings": "cnnkit.server.settings",
    "MicroBatcher": "cnnkit.server.batcher", "serve": "cnnkit.server.background", "Serving": "cnnkit.server.background",
})
