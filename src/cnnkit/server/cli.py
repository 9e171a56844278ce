"""``cnnkit serve RUN_OR_MODEL``: options, and the uvicorn server that runs the app.

Kept free of Starlette/uvicorn imports at module level, so registering the
command costs ``cnnkit --help`` nothing. uvicorn handles SIGTERM/SIGINT: it
stops accepting connections, lets in-flight requests finish (up to
``graceful_timeout_s``), then the app's lifespan drains the batcher.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import math
import os
import queue
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cnnkit.engines import ENGINES
from cnnkit.errors import ConfigError, require
from cnnkit.options import add_field_options
from cnnkit.server.settings import ServerSettings, safe_model_name

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

ENGINE_CHOICES = ("auto", *ENGINES)  # as cnnkit.engines.choice offers them (the table loads no Keras)
API_KEY_ENV = "CNNKIT_API_KEY"  # the key from the environment: it stays out of the process list
# ServerSettings' fields that `cnnkit serve` offers, in the order its --help lists them.
_OPTIONS = ("host", "port", "max_batch_size", "max_wait_ms", "queue_size", "max_body_mb", "model_name", "model_version")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s positional and options to its sub-parser."""
    parser.add_argument("run", metavar="RUN_OR_MODEL", help="run folder, .keras file, or exported model.json")
    add_field_options(parser, ServerSettings, _OPTIONS, keep_defaults=False)  # unset: the dataclass's default
    parser.add_argument("--engine", default="auto", choices=ENGINE_CHOICES,
                        help="what runs the model: auto (default: the fastest measured at start-up), "
                             + " or ".join(ENGINES))
    parser.add_argument("--api-key", dest="api_key",
                        help="a bearer token every route but the probes needs (default: $CNNKIT_API_KEY; none: open)")
    parser.add_argument("--cors-origin", dest="cors_origins", action="append", metavar="ORIGIN",
                        help="let a web page from ORIGIN (e.g. https://app.example.com) call the API; repeatable; "
                             "off by default")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="uvicorn's log level (default info)")
    parser.add_argument("--no-tta", action="store_true",
                        help="one model call per image, even where the model's recipe averages shifted copies "
                             "(test-time augmentation): 5x less work, a little less accuracy")


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """ServerSettings from parsed options; unset options keep the dataclass defaults."""
    values = {name: getattr(args, name) for name in _OPTIONS if getattr(args, name, None) is not None}
    key = getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV) or None
    if key is not None:
        values["api_key"] = key
    if getattr(args, "cors_origins", None):
        values["cors_origins"] = tuple(args.cors_origins)
    if "model_name" not in values:
        path = Path(args.run)
        values["model_name"] = safe_model_name(path.name if path.is_dir() else path.stem)
    return ServerSettings(**values)


def build_server(app: Starlette, settings: ServerSettings, log_level: str = "info") -> uvicorn.Server:
    """The uvicorn server for ``app`` (one process; the batcher wants every request in one place)."""
    import uvicorn

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                            timeout_graceful_shutdown=math.ceil(settings.graceful_timeout_s),  # whole seconds
                            lifespan="on", server_header=False, access_log=False)  # cnnkit.access logs instead
    return uvicorn.Server(config)


def serve(args: argparse.Namespace) -> int:
    """Load the model, then serve it until SIGTERM/SIGINT; return the exit status."""
    settings = settings_from_args(args)
    require("serve", "starlette", "uvicorn", "multipart", purpose="Serving (cnnkit serve)")
    from cnnkit.engines import with_tta
    from cnnkit.engines.choice import choose_engine
    from cnnkit.loading import load
    from cnnkit.server.app import create_app

    check_port_free(settings)  # before the (slow) model load
    predictor = load(args.run, tta=not args.no_tta)
    choice = choose_engine(predictor.model, args.engine, batch_sizes=sorted({1, settings.max_batch_size}))
    print(choice.line(), flush=True)
    server = build_server(create_app(predictor, settings, engine=with_tta(choice.engine, predictor.tta),
                                     engine_choice=choice.describe()), settings, args.log_level)
    listener = _access_log(args.log_level in ("debug", "info"))
    tta = f", averaging test-time views {predictor.tta}" if predictor.tta else ""
    print(f"Serving {settings.model_name} ({len(predictor.class_names)} classes, input "
          f"{'x'.join(map(str, predictor.input_shape))}{tta}) on http://{settings.host}:{settings.port}"
          f"{', API key required' if settings.api_key else ''}  "
          "(POST /v1/predict, POST /v2/models/{name}/infer; Ctrl+C to stop)", flush=True)
    try:
        server.run()
    finally:
        listener.stop()  # writes out the lines still queued
    return 0 if server.started else 1  # uvicorn logged why start-up failed


def _access_log(enabled: bool) -> logging.handlers.QueueListener:
    """Send ``cnnkit.access``'s lines (one per request) to stderr from a thread of their own.

    The event loop only puts each line on a queue; the write to stderr, which may block on a slow
    terminal or pipe, never delays an answer.
    """
    access = logging.getLogger("cnnkit.access")
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    access.handlers = [logging.handlers.QueueHandler(lines)]
    access.propagate = False
    access.setLevel(logging.INFO if enabled else logging.WARNING)
    listener = logging.handlers.QueueListener(lines, logging.StreamHandler(sys.stderr))
    listener.start()
    return listener


def check_port_free(settings: ServerSettings) -> None:
    """Fail with a hint, not uvicorn's traceback, when the port is taken."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            raise ConfigError(f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror}.",
                              "Pick another port, or stop the program using it.", params="port") from None
