"""A backbone's weights: ``imagenet`` through Keras' own fetch (hash checked), ``none``, or a file by path.

``imagenet`` calls :func:`keras.utils.get_file` with the file name, URL and hash of the registry
(:mod:`cnnkit.models.backbones`), into ``$KERAS_HOME/models`` where every Keras user's downloads
go: a file already there with the right hash is used without the network, and a download whose
hash differs is refused and removed. Two callers start a download: ``weights="imagenet"`` with a
backbone, and recipe auto on photos (:mod:`cnnkit.training.auto`), which fetches its preferred
backbone's weights with :data:`AUTO_TIMEOUT` and trains from scratch when it cannot.

- ``$CNNKIT_WEIGHTS_MIRROR`` replaces the publisher's folder URL with another that serves the same
  file names (a company mirror behind a firewall); the hash check stays.
- ``$CNNKIT_OFFLINE=1`` (also ``true``, ``yes``, ``on``) forbids every weights download: recipe auto
  does not try, and ``weights="imagenet"`` uses the file in Keras' folder when it has the pinned hash
  and otherwise fails with one :class:`~cnnkit.errors.ConfigError` saying where to put it. A cached
  file rather than a failure, because that is what offline means for the other libraries that fetch
  weights (``HF_HUB_OFFLINE``: the cache, never the network) and what a machine given its files by
  hand needs; a run that must not use ImageNet weights at all says ``weights="none"``.
- The fetch never hangs: sockets give up after :data:`CONNECT_TIMEOUT` seconds of silence (recipe
  auto's, :data:`AUTO_TIMEOUT`), and looking up the host's address is given as long.
- Every failure is one :class:`~cnnkit.errors.ConfigError` (:class:`WeightsUnavailable`) that names the
  URL, the file and its hash, where to put a copy, and ``weights=PATH``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnkit.errors import ConfigError
from cnnkit.models.backbones import BACKBONES, Backbone

CONNECT_TIMEOUT = 15.0  # seconds without a byte before a fetch gives up (keras#5005: hangs of 30 minutes)
# Recipe auto's fetch: nobody asked for it, so an offline machine must not wait long to train from scratch.
AUTO_TIMEOUT = 3.0  # per address tried and for the look-up: under 10 s with IPv6 and IPv4 both dark
MIRROR_ENV = "CNNKIT_WEIGHTS_MIRROR"
OFFLINE_ENV = "CNNKIT_OFFLINE"


class WeightsUnavailable(ConfigError):
    """The ImageNet weights could not be had: ``refused`` when a file came whose hash is not the pinned one
    (it is removed), else the network failed (refused, unreachable, silent) or downloads are forbidden."""

    def __init__(self, message: str, hint: str, *, refused: bool = False) -> None:
        super().__init__(message, hint, params="weights")
        self.refused = refused


def offline() -> bool:
    """True when ``$CNNKIT_OFFLINE`` forbids downloading weights (``1``, ``true``, ``yes`` or ``on``)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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
        return fetch_weights(backbone)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"The weights file does not exist. Expected imagenet, none or the path of a weights file. "
                          f"Received: weights={str(weights)!r}.",
                          f"Pass weights='imagenet', 'none', or the path of a copy of {backbone.weights_file}.",
                          params="weights")
    return path


def fetch_weights(backbone: Backbone, *, timeout: float | None = None, quiet: bool = False) -> Path:
    """The backbone's ImageNet weights in Keras' folder: the file there with the pinned hash, else downloaded.

    ``timeout``: seconds of silence (and of looking up the host) before the download gives up; by default
    :data:`CONNECT_TIMEOUT`, read at the call. ``quiet``: Keras' own "Downloading data from" line and
    progress bar are not shown (the caller has said it in one line). Under ``$CNNKIT_OFFLINE`` only a file
    already there is used. Raises :class:`WeightsUnavailable`.

    Example:
        >>> fetch_weights(get_backbone("mobilenet_v3_small"), timeout=4.0)  # doctest: +SKIP
        PosixPath('/home/me/.keras/models/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5')
    """
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    folder, url = keras_models_dir(), weights_url(backbone)
    kind = "sha256" if len(backbone.weights_hash) == 64 else "md5"
    target = folder / backbone.weights_file
    received = "Received: weights='imagenet'"
    fix = (f"Download {url} where there is a network, check its {kind}, and copy it to {target}; or pass "
           f"weights PATH, a copy of it anywhere, or weights none to train without it.")
    if offline():
        if weights_ready(backbone):
            return target
        raise WeightsUnavailable(
            f"Downloads are forbidden (${OFFLINE_ENV}={os.environ[OFFLINE_ENV]}) and the ImageNet weights of "
            f"{backbone.name} are not in {folder} with the pinned {kind} {backbone.weights_hash}: expected file "
            f"{backbone.weights_file}. {received}.", fix + f" Or unset {OFFLINE_ENV} to let cnnkit fetch it.")
    try:
        if not weights_ready(backbone):  # before Keras loads: no address, no wait for its import
            _look_up(url, timeout)
        from cnnkit._backend import keras

        folder.mkdir(parents=True, exist_ok=True)  # Keras falls back to /tmp/.keras when the folder is missing
        with _socket_timeout(timeout), _quiet(quiet):
            path = keras.utils.get_file(backbone.weights_file, url, cache_dir=str(folder.parent),
                                        cache_subdir=folder.name, file_hash=backbone.weights_hash)
    except Exception as exc:  # noqa: BLE001 - Keras raises bare Exception for a failed download
        why = _reason(exc)
        refused = "hash does not match" in str(exc)
        if refused:
            with contextlib.suppress(OSError):
                target.unlink()  # Keras leaves the refused file behind; nothing unverified stays
        raise WeightsUnavailable(
            f"Could not get the ImageNet weights of {backbone.name}: {why}. URL: {url}; expected file "
            f"{backbone.weights_file} with {kind} {backbone.weights_hash}, in {folder}. {received}.",
            fix, refused=refused) from None
    return Path(path)


def _look_up(url: str, timeout: float) -> None:
    """Find the host's address within ``timeout`` seconds: a socket timeout does not bound the resolver, whose
    retries against a DNS server that never answers take 10 s or more."""
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        return
    failure: list[BaseException] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, None)
        except OSError as exc:
            failure.append(exc)

    thread = threading.Thread(target=look_up, name="cnnkit-weights-dns", daemon=True)  # left behind if it hangs
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise OSError(f"no address for {host} within {timeout:g} s")
    if failure:
        raise OSError(f"no address for {host}: {failure[0]}")


def _quiet(quiet: bool) -> contextlib.AbstractContextManager[Any]:
    """Keras writes its download line and bar straight to ``sys.stdout``; quiet, that is set aside for the
    download (training has not started: nothing else writes then)."""
    return contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()


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
