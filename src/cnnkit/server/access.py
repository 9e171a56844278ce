"""Who may call, and what each call leaves behind: the API key, the request id and the access log.

:class:`AccessMiddleware`, pure ASGI, wraps every request:

- **Request id.** A client's ``X-Request-ID`` (letters, digits, ``._-``, at most 128) is kept, any
  other gets a fresh one (this process's random prefix and a counter: unique, and no system call
  per request); the answer carries it in ``X-Request-ID``, and so does the log line.
- **API key.** With ``api_key`` set, every route but the probes (:data:`OPEN_PATHS`: liveness and
  readiness, which orchestrators call without credentials) needs ``Authorization: Bearer <key>``,
  compared in constant time (:func:`hmac.compare_digest`). Anything else is a 401 with
  ``WWW-Authenticate: Bearer`` and the route's error shape (the protocol's ``{"error"}`` on ``/v2``).
- **Access log.** One JSON line per request on the ``cnnkit.access`` logger: time, request id,
  client, method, path, status, bytes sent and milliseconds.

CORS is Starlette's ``CORSMiddleware``, added outside this one only when ``cors_origins`` is set
(:func:`cnnkit.server.app.create_app`), so a browser's preflight never needs the key.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnkit.server.errors import error_body

access_logger = logging.getLogger("cnnkit.access")
OPEN_PATHS = frozenset({"/livez", "/readyz", "/v2/health/live", "/v2/health/ready"})
REQUEST_ID = b"x-request-id"
_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")


class AccessMiddleware:
    """Request ids, the bearer-token check and one structured log line per request."""

    def __init__(self, app: ASGIApp, api_key: str | None = None) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.prefix, self.counter = secrets.token_hex(6).encode(), itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope["headers"])  # lower-case names (ASGI); a repeated header keeps its last value
        given = headers.get(REQUEST_ID, b"")
        request_id = given if _ID.match(given) else b"%s-%x" % (self.prefix, next(self.counter))
        sent: dict[str, Any] = {"status": 499, "bytes": 0}  # 499: the client went away before any answer

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (REQUEST_ID, request_id)]}
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            if self.key is not None and scope["path"] not in OPEN_PATHS and not _authorized(headers, self.key):
                await self._refuse(scope, headers, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            if access_logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_logger.info(json.dumps({
                    "time": round(time.time(), 3), "request_id": request_id.decode(),
                    "client": f"{client[0]}:{client[1]}" if client else None, "method": scope["method"],
                    "path": scope["path"][:200], "status": sent["status"], "bytes": sent["bytes"],
                    "ms": round((time.perf_counter() - start) * 1000, 3)}))

    async def _refuse(self, scope: Scope, headers: dict[bytes, bytes], send: Send) -> None:
        given = headers.get(b"authorization")
        received = ("no Authorization header" if given is None else
                    "an Authorization header that is not 'Bearer <key>'" if not given.lower().startswith(b"bearer ")
                    else "a bearer token that is not this server's key")
        message = (f"Unauthorized: this server needs its API key. Received: {received}. Send the header "
                   "'Authorization: Bearer <key>' with the key the server was started with (--api-key or "
                   "$CNNKIT_API_KEY).")
        body = json.dumps(error_body(401, message, scope["path"])).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="cnnkit"')]})
        await send({"type": "http.response.body", "body": body})


def _authorized(headers: dict[bytes, bytes], key: bytes) -> bool:
    """Whether the request bears ``key``; compare_digest takes as long wherever the two differ, so the key
    cannot be guessed byte by byte from the time a refusal takes."""
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    return hmac.compare_digest(token.strip(), key) and scheme.lower() == b"bearer"
