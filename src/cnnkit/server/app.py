"""The HTTP service: routes over one Predictor, built by :func:`create_app`.

Endpoints (:data:`ROUTES`; the 404 answer lists the app's routes from the app itself):
  * ``POST /v1/predict``: images (multipart field ``file``, repeatable, or a raw
    ``image/*`` body) → labels and top-k probabilities.
  * The Open Inference Protocol (KServe V2, :mod:`cnnkit.server.oip`): ``GET /v2``,
    ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{version}]`` and its
    ``/ready``, and ``POST .../infer`` (``UINT8`` pixels or ``BYTES`` image files in, JSON or binary
    tensors); errors there are the protocol's ``{"error": ...}``.
  * ``GET /v1/models``, ``GET /livez``, ``GET /readyz``, ``GET /metrics``.
  * ``GET /``: a page to draw a digit or upload a photo and see the answer (``static/``).

Decoding runs in a thread pool and inference in the batcher's one thread, so the
event loop only moves bytes. The app's state lives in :class:`Service`
(``app.state.service``), started and drained by the ASGI lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cnnkit.engines import Engine
from cnnkit.predictor import Predictor
from cnnkit.server import oip, payloads
from cnnkit.server.access import AccessMiddleware
from cnnkit.server.batcher import MicroBatcher, QueueFullError, ShuttingDownError
from cnnkit.server.errors import EXCEPTION_HANDLERS, ApiError, error_response, is_v2
from cnnkit.server.metrics import MetricsMiddleware, ServerMetrics
from cnnkit.server.settings import ServerSettings

# Every API endpoint: method, path, and the Service method that answers it. The tests run the
# same checks over each (tests/helpers.py check_route).
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/predict", "predict"),
    ("POST", "/v2/models/{name}/infer", "infer_v2"),
    ("POST", "/v2/models/{name}/versions/{version}/infer", "infer_v2"),
    ("GET", "/v2", "server_metadata_v2"),
    ("GET", "/v2/health/live", "livez"),
    ("GET", "/v2/health/ready", "readyz"),
    ("GET", "/v2/models/{name}", "model_metadata_v2"),
    ("GET", "/v2/models/{name}/versions/{version}", "model_metadata_v2"),
    ("GET", "/v2/models/{name}/ready", "model_ready_v2"),
    ("GET", "/v2/models/{name}/versions/{version}/ready", "model_ready_v2"),
    ("GET", "/v1/models", "models"),
    ("GET", "/livez", "livez"),
    ("GET", "/readyz", "readyz"),
    ("GET", "/metrics", "metrics_text"),
)
STATIC = Path(__file__).parent / "static"
# Request bodies this small are decoded on the event loop (a 28x28 PNG: ~0.3 KB, ~30 us); a DEFLATE
# bomb this size decodes to at most ~4 MB, a few ms. Everything larger goes to the decode threads.
INLINE_DECODE_BYTES = 4096
CORS_HEADERS = ["Authorization", "Content-Type", "Inference-Header-Content-Length", "X-Request-ID"]


def oip_path(request: Request) -> bool:
    """Whether the request came by an Open Inference Protocol route (its answers take the protocol's shape)."""
    return is_v2(request.url.path)
T = TypeVar("T")


class Service:
    """One model behind HTTP: settings, metrics, the batcher and the decoding threads."""

    def __init__(self, predictor: Predictor, settings: ServerSettings, engine: Engine | None = None,
                 engine_choice: dict[str, Any] | None = None) -> None:
        self.predictor = predictor
        self.settings = settings
        self.metrics = ServerMetrics(settings.max_batch_size)
        self.batcher = MicroBatcher(engine or predictor.engine, max_batch_size=settings.max_batch_size,
                                    max_wait_ms=settings.max_wait_ms, queue_size=settings.queue_size,
                                    metrics=self.metrics)
        self.decode_pool: ThreadPoolExecutor | None = None
        self.engine_info = engine_choice or self.batcher.engine.describe()

    async def start(self) -> None:
        self.decode_pool = ThreadPoolExecutor(self.settings.decode_workers, thread_name_prefix="cnnkit-decode")
        await self.batcher.start()  # loads and warms up the engine
        # What is alive now (TensorFlow, Keras, the model: some 500,000 objects) lives as long as the
        # server. Frozen out of the garbage collector's reach, they no longer make each full collection
        # stop every thread for the ~200 ms it takes to walk them (benchmarks/gc_pause.py): the p99 under load.
        gc.freeze()

    async def stop(self) -> None:
        await self.batcher.close()  # answers every queued request before the process exits
        self.metrics.ready.set(0)
        if self.decode_pool is not None:
            self.decode_pool.shutdown(wait=True)
            self.decode_pool = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # -- helpers -----------------------------------------------------------------------------

    @property
    def model_info(self) -> dict[str, str]:
        return {"name": self.settings.model_name, "version": self.settings.model_version}

    def _check_started(self) -> ThreadPoolExecutor:
        """The decode threads; a 503 before start-up finished (or after shutdown began)."""
        if self.decode_pool is None:
            raise ApiError(503, "The server is starting or stopping. Received: a request before start-up "
                                "finished. Retry shortly; GET /readyz answers 200 when the model is ready.",
                           {"Retry-After": str(self.settings.retry_after_s)})
        return self.decode_pool

    async def _in_pool(self, func: Callable[..., T], *args: object) -> T:
        """Run CPU-bound parsing/decoding in the decode threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._check_started(), func, *args)

    async def _decode(self, files: list[tuple[str, bytes]]) -> np.ndarray:
        """Decode ``(name, bytes)`` files into one batch: small ones here, the others in the decode threads.

        Below :data:`INLINE_DECODE_BYTES` in all (a few digits or icons), a decode takes tens of
        microseconds, less than handing it to a thread and back; larger files go to the pool, so
        that the event loop never decodes a photo.
        """
        limit = self.settings.max_image_pixels
        self._check_started()
        if sum(len(data) for _, data in files) <= INLINE_DECODE_BYTES:
            return np.stack([payloads.decode_for(self.predictor, data, name, limit) for name, data in files])
        return np.stack(await asyncio.gather(*(self._in_pool(payloads.decode_for, self.predictor, data, name, limit)
                                               for name, data in files)))

    async def _probabilities(self, pixels: np.ndarray) -> np.ndarray:
        pixels = payloads.check_batch(self.predictor, pixels)
        retry = {"Retry-After": str(self.settings.retry_after_s)}
        try:
            return await self.batcher.submit(pixels)
        except QueueFullError as exc:
            raise ApiError(503, f"Server busy: {exc} Received: one more. Retry after "
                                f"{self.settings.retry_after_s} s, or start the server with a larger "
                                "--queue-size.", retry) from None
        except ShuttingDownError as exc:
            raise ApiError(503, f"{exc} Received: a new request while draining. Retry on another "
                                "replica or after the restart.", retry) from None

    def _top_k(self, request: Request) -> int:
        raw = request.query_params.get("top_k", str(self.settings.default_top_k))
        if not raw.isdigit() or int(raw) < 1:
            raise ApiError(422, f"Expected top_k to be a positive integer. Received: top_k={raw!r}. "
                                "Pass e.g. ?top_k=3.")
        return min(int(raw), len(self.predictor.class_names))

    # -- endpoints -----------------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        top_k = self._top_k(request)
        kind, limit = payloads.media_type(request), self.settings.max_body_bytes
        if kind == "multipart/form-data":
            uploads = await payloads.read_uploads(request, limit, self.settings.max_files)
        elif kind.startswith("image/"):
            uploads = [("body", await payloads.read_body(request, limit))]
        else:
            raise ApiError(415, f"Unsupported Content-Type. Received: {request.headers.get('content-type')!r}. "
                                "Send multipart/form-data with field 'file' (curl -F file=@digit.png ...) or "
                                "the raw image with Content-Type: image/png (or image/jpeg, ...).")
        probs = await self._probabilities(await self._decode(uploads))
        predictions = [
            {"label": p.label, "probability": p.probability,
             "top_k": [{"label": label, "probability": prob} for label, prob in p.top_k]}
            for p in self.predictor.label(probs, top_k)
        ]
        return JSONResponse({"model": self.model_info, "predictions": predictions})

    def _check_model(self, request: Request) -> None:
        """404 unless the path names this server's model (and version, if it names one)."""
        name, version = request.path_params["name"], request.path_params.get("version")
        if name != self.settings.model_name or version not in (None, self.settings.model_version):
            asked = name + (f" version {version}" if version else "")
            raise ApiError(404, f"Unknown model. Received: {asked!r}. This server serves "
                                f"{self.settings.model_name!r} version {self.settings.model_version!r}: "
                                f"GET /v2/models/{self.settings.model_name} describes it.")

    async def infer_v2(self, request: Request) -> Response:
        self._check_model(request)
        kind, header = payloads.media_type(request), request.headers.get(oip.HEADER_LENGTH)
        if kind and header is None and kind != "application/json" and not kind.endswith("+json"):
            raise ApiError(415, f"Unsupported Content-Type for an inference request. Received: {kind!r}. "
                                "Send JSON (Content-Type: application/json), or JSON then binary tensors with "
                                "the Inference-Header-Content-Length header.")
        body = await payloads.read_body(request, self.settings.max_body_bytes)
        parsed = await self._in_pool(oip.parse_request, body, header, self.predictor.input_shape)
        if parsed.images is not None:
            pixels = await self._decode([(f"images[{i}]", data) for i, data in enumerate(parsed.images)])
        elif parsed.pixels is not None:
            pixels = parsed.pixels
        else:  # parse_request gives one or the other
            raise TypeError("The parsed request holds neither pixels nor images.")
        probs = await self._probabilities(pixels)
        body, headers, media = oip.encode_response(parsed, probs, self.predictor.class_names, self.settings.model_name,
                                                   self.settings.model_version)
        return Response(body, media_type=media, headers=headers)

    async def server_metadata_v2(self, request: Request) -> Response:
        from cnnkit._version import __version__

        return JSONResponse({"name": "cnnkit", "version": __version__, "extensions": oip.EXTENSIONS,
                             "engine": self.engine_info})

    async def model_metadata_v2(self, request: Request) -> Response:
        self._check_model(request)
        return JSONResponse(oip.model_metadata(self.settings.model_name, self.settings.model_version,
                                               f"cnnkit_{self.batcher.engine.name}", self.predictor.input_shape,
                                               len(self.predictor.class_names)))

    async def model_ready_v2(self, request: Request) -> Response:
        self._check_model(request)
        return await self.readyz(request)

    async def models(self, request: Request) -> Response:
        meta = self.predictor.metadata
        return JSONResponse({"models": [{**self.model_info, "class_names": self.predictor.class_names,
                                         "input_shape": list(self.predictor.input_shape),
                                         "color_mode": meta.color_mode, "resize": meta.resize,
                                         "tta": self.predictor.tta, "engine": self.engine_info}]})

    async def livez(self, request: Request) -> Response:
        return JSONResponse({"live": True} if oip_path(request) else {"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        if self.batcher.ready:
            return JSONResponse({"ready": True} if oip_path(request) else {"status": "ready", "model": self.model_info})
        return error_response(503, "Not ready: the model is loading or warming up (or the server is draining). "
                                   f"Received: GET {request.url.path}. Retry shortly.",
                              {"Retry-After": str(self.settings.retry_after_s)}, request.url.path)

    async def metrics_text(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)


def create_app(predictor: Predictor, settings: ServerSettings | None = None, *,
               engine: Engine | None = None, engine_choice: dict[str, Any] | None = None) -> Starlette:
    """The Starlette app serving ``predictor``.

    Args:
        predictor: the model and its metadata (``cnnkit.load(run_folder)``).
        settings: batching and limits; defaults to :class:`ServerSettings`.
        engine: replaces the predictor's engine (``cnnkit serve --engine``; tests use a slow or counting one).
        engine_choice: how the engine was chosen, for ``/v1/models`` and ``GET /v2``
            (:meth:`cnnkit.engines.choice.Choice.describe`; default: the engine's own description).

    Example:
        >>> app = create_app(cnnkit.load("runs/demo"))  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    service = Service(predictor, settings or ServerSettings(), engine, engine_choice)
    routes = [
        Route("/", lambda request: FileResponse(STATIC / "index.html"), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        *(Route(path, getattr(service, handler), methods=[method]) for method, path, handler in ROUTES),
    ]
    middleware = [Middleware(AccessMiddleware, api_key=service.settings.api_key),
                  Middleware(MetricsMiddleware, metrics=service.metrics)]
    if service.settings.cors_origins:  # outermost: a browser's preflight carries no key
        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=list(service.settings.cors_origins),
                                        allow_methods=["GET", "POST"], allow_headers=CORS_HEADERS,
                                        expose_headers=["X-Request-ID", "Inference-Header-Content-Length"]))
    app = Starlette(routes=routes, lifespan=service.lifespan, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=middleware)
    app.state.service = service
    return app
