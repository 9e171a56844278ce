"""JSON errors: every non-2xx answer is ``{"code": <int>, "message": "<what, received, fix>"}``, and on the
Open Inference Protocol's routes (``/v2...``) the protocol's own ``{"error": "<what, received, fix>"}``.

Routes raise :class:`ApiError`; a stray :class:`~cnnkit.errors.DataError`
(an image that will not decode, pixels of the wrong shape) becomes a 422, since
it is always about what the client sent. Other cnnkit errors (a bad config) are
the operator's, not the client's: they stay 500s. Starlette's own 404/405 are rewritten
to the same shape. Anything else is a bug of ours: a 500 whose body names no
internals (the traceback goes to the server log only).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from cnnkit.errors import DataError

logger = logging.getLogger("cnnkit.server")

INTERNAL_MESSAGE = "Internal server error: the request was valid but the server failed to answer it. " \
                   "Received: nothing you can fix. Retry later; the server log has the details."


class ApiError(Exception):
    """An HTTP error with a message for the client (what was wrong, what was received, how to fix it)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def is_v2(path: str) -> bool:
    """Whether ``path`` is one of the Open Inference Protocol's, whose errors are ``{"error": ...}``."""
    return path == "/v2" or path.startswith("/v2/")


def error_body(status: int, message: str, path: str = "") -> dict[str, object]:
    """The error's JSON for a request to ``path``."""
    return {"error": message} if is_v2(path) else {"code": status, "message": message}


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None,
                   path: str = "") -> JSONResponse:
    """The JSON error answer to a request for ``path``."""
    return JSONResponse(error_body(status, message, path), status_code=status, headers=dict(headers or {}))


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers, request.url.path)


async def data_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A DataError escaping a route is about the client's pixels or bytes: 422, message + hint."""
    assert isinstance(exc, DataError)
    return error_response(422, str(exc), path=request.url.path)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's 404 / 405: same JSON shape, with the routes that do exist."""
    assert isinstance(exc, HTTPException)
    endpoints = ", ".join(f"{'/'.join(sorted(route.methods - {'HEAD'}))} {route.path}"
                          for route in request.app.routes if getattr(route, "methods", None) and route.path != "/")
    hints = {404: f"No such endpoint. Received: {request.method} {request.url.path}. "
                  f"Endpoints: {endpoints}, and the page at GET /.",
             405: f"Method not allowed. Received: {request.method} {request.url.path}. "
                  f"Allowed: {(exc.headers or {}).get('Allow', 'see GET /v1/models')}."}
    return error_response(exc.status_code, hints.get(exc.status_code, str(exc.detail)), exc.headers,
                          request.url.path)


EXCEPTION_HANDLERS = {ApiError: api_error_handler, DataError: data_error_handler,
                      HTTPException: http_error_handler}
