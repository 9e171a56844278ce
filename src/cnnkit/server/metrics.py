"""Prometheus metrics (one registry per app) and the ASGI middleware that records them.

The middleware is also the last line of defence: an exception that escapes a
route is logged with its traceback and answered with a JSON 500 that names no
internals. Paths are recorded by route template (``/v2/models/{name}/infer``),
never the raw URL, so a scanner cannot blow up the label set.
"""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnkit.server.errors import INTERNAL_MESSAGE, error_body, logger

# Latency buckets from 1 ms: a small CNN answers in a few ms, a busy queue in hundreds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """The service's counters and histograms, in their own :class:`CollectorRegistry`.

    A per-app registry (not the global default) lets tests and several apps in one
    process each count their own requests.
    """

    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("cnnkit_http_requests", "HTTP requests by route, method and status.",
                                ["path", "method", "status"], registry=self.registry)
        self.latency = Histogram("cnnkit_http_request_duration_seconds", "Time to answer a request, by route.",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("cnnkit_http_errors", "Error responses by HTTP status code.",
                              ["code"], registry=self.registry)
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, max_batch_size} | {max_batch_size * 2})
        self.batch_size = Histogram("cnnkit_batch_size", "Images per model call (micro-batching).",
                                    buckets=[float(s) for s in sizes], registry=self.registry)
        self.inference = Histogram("cnnkit_inference_duration_seconds", "Time of one model call.",
                                   buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("cnnkit_queue_depth", "Requests waiting for the model.", registry=self.registry)
        self.ready = Gauge("cnnkit_ready", "1 once the model is warmed up and serving.", registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware: count, time, and turn escaped exceptions into a JSON 500."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: dict[str, Any] = {}

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except Exception:
            logger.exception("Unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if "code" in status:  # headers already sent: nothing sane left to tell the client
                raise
            status["code"] = 500
            body = json.dumps(error_body(500, INTERNAL_MESSAGE, scope.get("path", ""))).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "<unmatched>"
            code = status.get("code", 499)  # no response at all: the client went away (nginx's 499)
            self.metrics.requests.labels(path, scope.get("method", ""), str(code)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
            if code >= 400:
                self.metrics.errors.labels(str(code)).inc()
