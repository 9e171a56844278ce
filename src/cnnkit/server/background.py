"""``cnnkit.serve(run)``: the server ``cnnkit serve`` runs, started in a background thread of this process.

For a notebook or a script that wants an HTTP endpoint while it goes on: the cell returns at once with a
:class:`Serving` handle (its URL, the page at ``/``, ``stop()``). It is the same app, micro-batcher and
engine choice as the command's; only the process differs (the command's owns its signals, this one's
thread stops when asked, or when the kernel ends).

Example:
    >>> server = cnnkit.serve(run, port=8000)  # doctest: +SKIP
    >>> server  # doctest: +SKIP
    Serving 'fast-mnist' at http://127.0.0.1:8000 (POST /v1/predict, POST /v2/models/fast-mnist/infer; .stop())
    >>> server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import html
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.errors import ConfigError, require
from cnnkit.server.cli import build_server, check_port_free
from cnnkit.server.settings import ServerSettings, safe_model_name

START_TIMEOUT_S = 120.0  # loading the model and measuring the engines take seconds; a port in use, none


@dataclass(repr=False)
class Serving:
    """A running server: where it listens, and :meth:`stop`. A context manager stops it on leaving."""

    url: str
    settings: ServerSettings
    server: Any = field(compare=False)  # uvicorn.Server
    thread: threading.Thread = field(compare=False)

    @property
    def running(self) -> bool:
        """Whether it still answers (started and not stopped)."""
        return self.thread.is_alive() and bool(self.server.started)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting connections, finish the requests in flight, drain the batcher; wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> Serving:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "" if self.running else " (stopped)"
        name = self.settings.model_name
        return (f"Serving {name!r} at {self.url}{state} (POST /v1/predict, POST /v2/models/{name}/infer; "
                ".stop() to end it)")

    def _repr_html_(self) -> str:
        link = html.escape(self.url)
        return f'<p>{html.escape(repr(self))} · <a href="{link}/" target="_blank">open the page</a></p>'


def serve(target: Any, *, port: int = 8000, host: str = "127.0.0.1", engine: str = "auto", tta: bool = True,
          log_level: str = "warning", **settings: Any) -> Serving:
    """Serve ``target`` (a Run, a run folder, a ``.keras`` file, an exported ``model.json`` or a Predictor) on
    ``host:port`` from a background thread; return once it answers.

    ``settings``: any other :class:`~cnnkit.server.settings.ServerSettings` field (``max_batch_size``,
    ``api_key``, ``model_name``, ...). ``engine``: ``auto`` (the fastest measured here), or one of
    :data:`cnnkit.engines.ENGINES`.

    Raises:
        ConfigError: the port is taken, a setting is unknown or out of range, the serve extra is missing.
    """
    require("serve", "starlette", "uvicorn", "multipart", purpose="Serving (cnnkit.serve)")
    from cnnkit.engines import with_tta
    from cnnkit.engines.choice import choose_engine
    from cnnkit.loading import load
    from cnnkit.predictor import Predictor
    from cnnkit.server.app import create_app

    unknown = sorted(set(settings) - set(ServerSettings.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"Unknown server setting {unknown[0]!r}. Received: {unknown}.",
                          "The settings are ServerSettings' fields: see help(cnnkit.server.ServerSettings).",
                          params=unknown[0])
    path = getattr(target, "run_dir", target)
    if "model_name" not in settings and isinstance(path, (str, os.PathLike)):
        settings["model_name"] = safe_model_name(Path(path).name if Path(path).is_dir() else Path(path).stem)
    config = ServerSettings(host=host, port=port, **settings)
    check_port_free(config)
    predictor = target if isinstance(target, Predictor) else load(path, tta=tta)
    choice = choose_engine(predictor.model, engine, batch_sizes=sorted({1, config.max_batch_size}))
    app = create_app(predictor, config, engine=with_tta(choice.engine, predictor.tta), engine_choice=choice.describe())
    server = build_server(app, config, log_level)
    thread = threading.Thread(target=server.run, name=f"cnnkit-serve-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise ConfigError(f"The server did not start on {host}:{port}. Received: no answer after "
                          f"{time.monotonic() - deadline + START_TIMEOUT_S:.0f} s.",
                          "Pass log_level='info' to see uvicorn's lines, or pick another port.", params="port")
    shown = f"[{host}]" if ":" in host else host
    return Serving(f"http://{shown}:{port}", config, server, thread)
