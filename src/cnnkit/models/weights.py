"""A backbone's weights: ``imagenet`` through Keras' own fetch (hash checked), ``none``, or a file by path.

``imagenet`` calls :func:`keras.utils.get_file` with the file name, URL and hash of the registry
(:mod:`cnnkit.models.backbones`), into ``$KERAS_HOME/models`` where every Keras user's downloads
go: a file already there with the right hash is used without the network, and a download whose
hash differs is refused. Nothing here downloads on its own.

- ``$CNNKIT_WEIGHTS_MIRROR`` replaces the publisher's folder URL with another that serves the same
  file names (a company mirror behind a firewall); the hash check stays.
- The fetch never hangs: sockets give up after :data:`CONNECT_TIMEOUT` seconds of silence.
- Every failure is one :class:`~cnnkit.errors.ConfigError` that names the URL, the file and its hash,
  where to put a copy, and ``weights=PATH``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnkit.errors import ConfigError
from cnnkit.models.backbones import BACKBONES, Backbone

CONNECT_TIMEOUT = 15.0  # seconds without a byte before a fetch gives up (keras#5005: hangs of 30 minutes)
MIRROR_ENV = "CNNKIT_WEIGHTS_MIRROR"


def keras_models_dir() -> Path:
    """Where Keras keeps the weights it fetches: ``$KERAS_HOME/models``, by default ``~/.keras/models``.

    Keras' own rule (``keras.src.backend.config``): ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras``
    where the home folder is read-only); asked of Keras itself once it is loaded, and worked out
    without loading it otherwise (``cnnkit show`` and ``verify`` load no Keras).
    """
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser() / "models"
    if "keras" in sys.modules:
        from cnnkit._backend import keras_home

        return Path(keras_home()) / "models"
    home = os.path.expanduser("~")
    return Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras" / "models"


def weights_url(backbone: Backbone) -> str:
    """The URL ``imagenet`` fetches: the publisher's, or the same file name under ``$CNNKIT_WEIGHTS_MIRROR``."""
    mirror = os.environ.get(MIRROR_ENV)
    return (mirror.rstrip("/") + "/" + backbone.weights_file) if mirror else backbone.weights_url


def is_cached(backbone: Backbone) -> bool:
    """True when the backbone's ImageNet weights file is already in Keras' folder (its hash is checked on use)."""
    return (keras_models_dir() / backbone.weights_file).is_file()


def weights_ready(backbone: Backbone) -> bool:
    """True when the backbone's ImageNet weights are in Keras' folder with the pinned hash: usable offline."""
    path = keras_models_dir() / backbone.weights_file
    if not path.is_file():
        return False
    digest = hashlib.sha256() if len(backbone.weights_hash) == 64 else hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == backbone.weights_hash


def resolve_weights(backbone: Backbone, weights: str | os.PathLike[str] | None) -> Path | None:
    """The local file ``weights`` names for ``backbone`` (``None`` for ``none``: random initial weights).

    Example:
        >>> resolve_weights(get_backbone("efficientnet_v2_b0"), "imagenet")  # doctest: +SKIP
        PosixPath('/home/me/.keras/models/efficientnetv2-b0_notop.h5')
    """
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        return _fetch(backbone)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"The weights file does not exist. Expected imagenet, none or the path of a weights file. "
                          f"Received: weights={str(weights)!r}.",
                          f"Pass weights='imagenet', 'none', or the path of a copy of {backbone.weights_file}.",
                          params="weights")
    return path


def _fetch(backbone: Backbone) -> Path:
    from cnnkit._backend import keras

    folder, url = keras_models_dir(), weights_url(backbone)
    kind = "sha256" if len(backbone.weights_hash) == 64 else "md5"
    target = folder / backbone.weights_file
    try:
        folder.mkdir(parents=True, exist_ok=True)  # Keras falls back to /tmp/.keras when the folder is missing
        with _socket_timeout(CONNECT_TIMEOUT):
            path = keras.utils.get_file(backbone.weights_file, url, cache_dir=str(folder.parent),
                                        cache_subdir=folder.name, file_hash=backbone.weights_hash)
    except Exception as exc:  # noqa: BLE001 - Keras raises bare Exception for a failed download
        why = _reason(exc)
        if "hash does not match" in str(exc):
            with contextlib.suppress(OSError):
                target.unlink()  # Keras leaves the refused file behind; nothing unverified stays
        raise ConfigError(
            f"Could not get the ImageNet weights of {backbone.name}: {why}. URL: {url}; expected file "
            f"{backbone.weights_file} with {kind} {backbone.weights_hash}, in {folder}. Received: weights='imagenet'.",
            f"Download {url} where there is a network, check its {kind}, and copy it to {target}; or pass "
            f"weights PATH, a copy of it anywhere, or weights none to train without it.",
            params="weights") from None
    return Path(path)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "hash does not match" in text:
        return "the downloaded file's hash is not the one Keras pins for it"
    return f"the download failed ({text.rstrip('.')})"


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Keras' download (``urlretrieve``) sets no timeout; a default one applies to the sockets it opens."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def list_backbones() -> list[dict[str, Any]]:
    """Every backbone with its size, cost, ImageNet top-1 and whether its weights are on this machine already
    (what ``cnnkit backbones`` prints)."""
    return [{"name": b.name, "family": b.family, "params": b.params, "input_size": b.input_size,
             "gflops": b.gflops, "imagenet_top1": b.top1, "weights_here": is_cached(b),
             "weights_file": str(keras_models_dir() / b.weights_file), "description": b.description}
            for b in BACKBONES]
