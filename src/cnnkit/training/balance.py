"""Class weights for imbalanced data: none, balanced, your own, or balanced only when the data needs it.

A weight multiplies each image's loss by its class's weight, so a class with few images counts as
much in training as one with many. ``balanced`` gives class *c* the weight ``n / (K · n_c)``
(scikit-learn's formula: the weights average 1 over the training images). ``auto`` turns it on
only when the largest class holds at least :data:`AUTO_RATIO` times the images of the smallest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnnkit.errors import ConfigError

# auto's threshold. Near-balanced folders stay untouched (MNIST: 1.25, the weather photos: 1.71);
# a class with a third of the largest one's images or fewer is weighted. Below that, reweighting
# moves the decision boundary little and costs majority-class accuracy for it.
AUTO_RATIO = 3.0
MODES = ("auto", "none", "balanced")


def imbalance_ratio(y: np.ndarray, num_classes: int) -> float:
    """Images of the largest class over images of the smallest (inf when a class has none)."""
    counts = np.bincount(np.asarray(y), minlength=num_classes)
    return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())


def class_weights(spec: str | None, y: np.ndarray, class_names: Sequence[str]) -> tuple[dict[int, float] | None, str]:
    """The weights ``spec`` asks for, given the training labels ``y``, and one line saying what they are and why.

    ``spec``: ``"auto"`` (default), ``"none"``, ``"balanced"``, or ``"NAME=W,NAME=W"`` (unnamed classes
    weigh 1).

    Example:
        >>> class_weights("balanced", np.array([0, 0, 0, 1]), ["a", "b"])[0]
        {0: 0.6666666666666666, 1: 2.0}
    """
    spec = (spec or "auto").strip()
    k = len(class_names)
    ratio = imbalance_ratio(y, k)
    if spec == "none":
        return None, f"Class weights: none (imbalance ratio {ratio:.2f})."
    if spec == "auto" and ratio < AUTO_RATIO:
        return None, f"Class weights: none (imbalance ratio {ratio:.2f}, below auto's {AUTO_RATIO:g})."
    if spec in ("auto", "balanced"):
        counts = np.bincount(np.asarray(y), minlength=k).astype(np.float64)
        weights = {c: float(len(y) / (k * counts[c])) for c in range(k) if counts[c]}
        why = f"imbalance ratio {ratio:.2f}" + (f" ≥ auto's {AUTO_RATIO:g}" if spec == "auto" else "")
        return weights, f"Class weights: balanced ({why}): {_listing(weights, class_names)}."
    weights = _parse(spec, class_names)
    return weights, f"Class weights: as given: {_listing(weights, class_names)}."


def _parse(spec: str, class_names: Sequence[str]) -> dict[int, float]:
    hint = (f"Set class_weight to auto, none, balanced, or NAME=WEIGHT pairs such as "
            f"{class_names[0]}=2,{class_names[-1]}=0.5.")
    weights = {i: 1.0 for i in range(len(class_names))}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"Expected class_weight to be one of {MODES} or NAME=WEIGHT pairs. "
                              f"Received: class_weight={spec!r}.", hint, params="class_weight")
        if name.strip() not in class_names:
            raise ConfigError(f"class_weight names a class the data does not have: {name.strip()!r}. Expected one of "
                              f"{list(class_names)}. Received: class_weight={spec!r}.", hint, params="class_weight")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not weight > 0:
            raise ConfigError(f"Expected class weights > 0. Received: {item!r} in class_weight={spec!r}.", hint,
                              params="class_weight")
        weights[list(class_names).index(name.strip())] = weight
    return weights


def _listing(weights: dict[int, float], class_names: Sequence[str]) -> str:
    return ", ".join(f"{class_names[c]} {w:.3g}" for c, w in weights.items())
