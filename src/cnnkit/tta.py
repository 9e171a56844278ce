"""Test-time augmentation: average the class probabilities of a few shifted or mirrored copies of each image.

A recipe asks for it with ``tta={"shift": 1}`` or ``tta={"flip": True}``; the model's metadata carries it, and
:class:`cnnkit.engines.Averaged` applies it around whichever engine runs the model, so
evaluation, ``cnnkit predict`` and ``cnnkit serve`` give the same numbers. ``shift: k`` makes five
views of every image: itself and copies moved ``k`` pixels up, down, left and right,
the uncovered border filled with the nearest edge pixel. ``flip: True`` adds the image's mirror
(left to right: for recipes whose training flips that way, such as photos; never for digits).
Inference costs one model call's worth of arithmetic per view (one call on a larger batch).

Example:
    >>> import numpy as np
    >>> views(np.zeros((2, 28, 28, 1), np.uint8), {"shift": 1}).shape
    (10, 28, 28, 1)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.errors import ConfigError

_KEYS = {"shift", "flip"}


def check_spec(spec: dict[str, Any] | None, where: str = "tta") -> dict[str, Any]:
    """Validate a TTA spec; return it as a plain dict (``{}``: no TTA)."""
    spec = dict(spec or {})
    unknown = set(spec) - _KEYS
    if unknown:
        raise ConfigError(f"Unknown key(s) {sorted(unknown)} in {where}. Expected some of {sorted(_KEYS)}. "
                          f"Received: {where}={spec!r}.", "Use e.g. {\"shift\": 1}, {\"flip\": true} or {} for none.")
    shift = spec.get("shift", 0)
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ConfigError(f"{where}['shift'] must be a whole number of pixels >= 0. Received: shift={shift!r}.",
                          "Use 1 (copies moved by one pixel) or 0 for none.")
    flip = spec.get("flip", False)
    if not isinstance(flip, bool):
        raise ConfigError(f"{where}['flip'] must be true or false. Received: flip={flip!r}.",
                          "Use true (the image and its left-right mirror) or leave it out.")
    return {**({"shift": shift} if shift else {}), **({"flip": True} if flip else {})}


def num_views(spec: dict[str, Any]) -> int:
    """How many copies of each image the spec makes (1: TTA off)."""
    return 1 + (4 if spec.get("shift") else 0) + (1 if spec.get("flip") else 0)


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``images`` (N, H, W, C) moved by (dy, dx) pixels, the uncovered border filled from the edge."""
    h, w = images.shape[1:3]
    pad = max(abs(dy), abs(dx))
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w]


def views(images: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """All views of a ``(N, H, W, C)`` batch, view-major: ``(V * N, H, W, C)``, the originals first."""
    k = spec.get("shift", 0)
    copies = [_shifted(images, dy, dx) for dy, dx in ((k, 0), (-k, 0), (0, k), (0, -k))] if k else []
    if spec.get("flip"):
        copies.append(images[:, :, ::-1])
    return np.concatenate([images, *copies]) if copies else images
