"""The server's knobs in one dataclass, validated in one place.

``cnnkit serve`` fills it from its options; tests build it directly with small
values (``queue_size=1``, ``max_wait_ms=50``) to force the behaviour they check.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from cnnkit.errors import ConfigError
from cnnkit.options import option

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class ServerSettings:
    """How the HTTP service listens, batches and limits requests.

    Example:
        >>> ServerSettings(max_batch_size=8, max_wait_ms=5).max_body_bytes
        10485760
    """

    # Loopback by default: exposing a model is a deliberate choice.
    host: str = option("127.0.0.1", "--host", help="address to listen on (default %(default)s: this machine only)")
    port: int = option(8000, "--port", help="TCP port (default %(default)s)")
    # The {name} of /v2/models/{name}/infer; must be URL-safe. `cnnkit serve` names it after the run folder.
    model_name: str = option("model", "--model-name",
                             help="name in /v2/models/{name}/infer (default: the run folder's name)")
    model_version: str = option("1", "--model-version", help="version reported by the API (default %(default)s)")
    # Images per model call; small CNNs are ~flat in latency up to here.
    max_batch_size: int = option(32, "--max-batch-size", help="most images per model call (default %(default)s)")
    # 0: a lone request runs at once; under load, batches still form from what queues up while the
    # model runs. A few ms trade single-request latency for fuller batches.
    max_wait_ms: float = option(0.0, "--max-wait-ms", help="how long a request waits to share a batch (default "
                                                           "%(default)g: batches form under load)")
    # Pending requests before 503 + Retry-After (back-pressure, not a backlog).
    queue_size: int = option(256, "--queue-size",
                             help="requests waiting for the model before answering 503 (default %(default)s)")
    max_body_mb: float = option(10.0, "--max-body-mb",
                                help="largest request body in MiB; larger is 413 (default %(default)g)")
    # A 10 MB PNG may legally decode to ~190 MB of RGB; 16 M pixels (~48 MB RGB) bounds each decode.
    max_image_pixels: int = 16_000_000
    decode_workers: int = min(4, os.cpu_count() or 1)  # PNG/JPEG decoding threads (Pillow drops the GIL)
    max_files: int = 64  # images in one multipart request
    default_top_k: int = 3
    retry_after_s: int = 1  # the Retry-After a client sees with 503
    graceful_timeout_s: float = 30.0  # SIGTERM: how long in-flight requests may take before being cut
    # A bearer token every route but the probes needs (cnnkit.server.access); never printed (repr=False).
    api_key: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()  # origins a browser page may call from; none by default

    def __post_init__(self) -> None:
        positive = {"port": self.port, "max_batch_size": self.max_batch_size, "queue_size": self.queue_size,
                    "max_body_mb": self.max_body_mb, "decode_workers": self.decode_workers,
                    "max_files": self.max_files, "default_top_k": self.default_top_k,
                    "max_image_pixels": self.max_image_pixels}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"Server setting {name} must be positive. Received: {name}={value!r}.",
                                  f"Set {name} to a value > 0.", params=name)
        if self.port > 65535:
            raise ConfigError(f"Port must be 1-65535. Received: port={self.port}.", "Set port to e.g. 8000.",
                              params="port")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0. Received: max_wait_ms={self.max_wait_ms!r}.",
                              "Set max_wait_ms to 0 to run each request as soon as it arrives.", params="max_wait_ms")
        if self.api_key is not None and (len(self.api_key) < 16 or not self.api_key.isascii()
                                         or not self.api_key.isprintable() or " " in self.api_key):
            raise ConfigError(f"The API key must be at least 16 printable ASCII characters without spaces. Received: "
                              f"{len(self.api_key)} characters.", "Make one with: python -c "
                              "'import secrets; print(secrets.token_urlsafe(32))'.", params="api_key")
        for origin in self.cors_origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ConfigError(f"A CORS origin is a scheme and host, with no path. Received: {origin!r}.",
                                  "Pass e.g. --cors-origin https://app.example.com (or * for any origin).",
                                  params="cors_origins")
        if not _NAME.match(self.model_name):
            raise ConfigError(
                f"Model name must be letters, digits, '.', '_' or '-' (it appears in URLs). "
                f"Received: model_name={self.model_name!r}.", "Set model_name to e.g. mnist-fast.", params="model_name")

    @property
    def max_body_bytes(self) -> int:
        """The request body limit in bytes (``max_body_mb`` MiB)."""
        return int(self.max_body_mb * 1024 * 1024)


def safe_model_name(text: str) -> str:
    """A URL-safe model name derived from a run folder or file name (``runs/My Run`` → ``My-Run``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:128]
    return name or "model"
