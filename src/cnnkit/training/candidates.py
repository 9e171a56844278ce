"""What recipe auto's search tries: a space of recipes per kind of data, each point a :class:`Preset`.

A candidate is the kind's base recipe (``small``, ``photo``) with a few values changed, so it is data
like every recipe: it is built, saved and recorded the same way, and needs nothing registered. The
values are what matters for the data at hand (the question is the data's, not ours):

- **capacity**: the first stage's width (later stages double it), convolutions per stage, and the head
  (flatten, or global average pooling);
- **regularisation**: dropout before the classifier, decoupled weight decay (AdamW);
- **augmentation**, in the model and active only in training: random translation (a shift with zero
  padding, what a crop from a padded image does), horizontal flips, random erasing. Flips are never
  assumed: a flipped 2 is not a 2, a flipped beach is a beach, so each data set's validation split
  decides;
- the **learning rate**, as a multiple of the recipe's.

:func:`first_candidates` are tried first, in order: the base recipe itself (the reference every other
candidate must beat), then a few points spread over the space; after them Optuna's sampler proposes
the rest. :func:`complexity` orders candidates from simple to complex for the one-standard-error rule
(:mod:`cnnkit.training.search`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Protocol

from cnnkit.presets import Preset
from cnnkit.presets.base import FLAT, Layer, conv_bn, conv_pool_bn

# The space, as choices (categorical: Optuna's samplers and the leaderboard both read them as they are).
WIDTHS = (16, 32, 48)
DEPTHS = (1, 2)
HEADS = ("flatten", "average")
DROPOUTS = (0.0, 0.25, 0.5)
WEIGHT_DECAYS = (0.0, 0.05)
TRANSLATIONS = (0.0, 0.1)
FLIPS = (False, True)
ERASINGS = (0.0, 0.5)
LR_SCALES = (0.5, 1.0, 2.0)
SPACE: dict[str, tuple[Any, ...]] = {
    "width": WIDTHS, "depth": DEPTHS, "head": HEADS, "dropout": DROPOUTS, "weight_decay": WEIGHT_DECAYS,
    "translation": TRANSLATIONS, "flip": FLIPS, "erasing": ERASINGS, "lr_scale": LR_SCALES,
}
# The base recipe `small`, as a point of the space: its own values.
SMALL = {"width": 16, "depth": 1, "head": "flatten", "dropout": 0.0, "weight_decay": 0.0, "translation": 0.0,
         "flip": False, "erasing": 0.0, "lr_scale": 1.0}
# The recipes auto searches around; photos (recipe photo) fill the budget with the recipe's own epochs already.
SEARCHABLE = ("small",)
# Candidates may train longer than `small`'s 30 epochs: regularised and augmented networks keep improving.
MAX_EPOCHS = 80


class Trial(Protocol):
    """What a candidate is drawn from (an ``optuna.Trial`` has it)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def first_candidates() -> list[dict[str, Any]]:
    """The points tried before the sampler takes over: the base recipe, then wider, regularised and augmented ones."""
    regularised = {"dropout": 0.25, "weight_decay": 0.05, "translation": 0.1}
    return [
        SMALL,
        {**SMALL, "width": 32, "depth": 2, "head": "average", **regularised},
        {**SMALL, "width": 32, "depth": 2, "head": "average", **regularised, "flip": True},
        {**SMALL, "width": 48, "depth": 2, "head": "flatten", **regularised, "dropout": 0.5, "erasing": 0.5},
        {**SMALL, "width": 32, "depth": 1, **regularised},
    ]


def suggest(trial: Trial) -> dict[str, Any]:
    """One point of the space, drawn by ``trial``'s sampler."""
    return {name: trial.suggest_categorical(name, list(choices)) for name, choices in SPACE.items()}


def complexity(values: Mapping[str, Any]) -> tuple[float, ...]:
    """A sort key from simple to complex: fewer convolution filters first, then fewer regularisers and augmentations.

    Example:
        >>> complexity(SMALL) < complexity({**SMALL, "width": 32})
        True
    """
    extras = sum(1 for name in ("dropout", "weight_decay", "translation", "erasing") if values[name]) + values["flip"]
    return float(values["width"] * values["depth"]), float(extras), float(values["head"] != "flatten")


def small_candidate(base: Preset, values: Mapping[str, Any], input_shape: tuple[int, int, int], name: str) -> Preset:
    """``base`` (recipe ``small``) with ``values`` of :data:`SPACE`, for images of ``input_shape``.

    The stages pool only while the image stays at least 6 pixels wide, so an 8x8 image is not pooled
    down to 2x2 (two stages of ``small`` would); the first kernel is 5 wide from 16 pixels up, 3 below.
    """
    side = min(int(input_shape[0]), int(input_shape[1]))
    pools = max(0, min(2, int(math.log2(side / 6)))) if side >= 6 else 0
    width, depth, momentum = int(values["width"]), int(values["depth"]), 0.8
    first = 5 if side >= 16 else 3
    layers: list[Layer] = []
    for stage, filters in enumerate((width, 2 * width, 4 * width)):  # small's three stages, at depth 1 small itself
        if stage:
            for _ in range(depth - 1):
                layers += conv_bn(filters, 3, momentum=momentum)
        kernel = first if stage == 0 else 3
        last = conv_pool_bn if stage < min(pools, 2) else conv_bn
        layers += last(filters, kernel, momentum=momentum)
    layers.append(FLAT if values["head"] == "flatten" else ("GlobalAveragePooling2D", {}))
    if values["dropout"]:
        layers.append(("Dropout", {"rate": float(values["dropout"])}))
    augment: dict[str, Any] = {}
    if values["translation"]:
        augment["translation"] = float(values["translation"])
    if values["flip"]:
        augment["flip"] = "horizontal"
    if values["erasing"]:
        augment["erasing"] = float(values["erasing"])
    rate = base.optimizer["learning_rate"] * float(values["lr_scale"])
    optimizer = ({"name": "adamw", "learning_rate": rate, "weight_decay": float(values["weight_decay"])}
                 if values["weight_decay"] else {"name": "adam", "learning_rate": rate})
    settings = ", ".join(f"{key} {value}" for key, value in values.items())
    return dataclasses.replace(
        base, name=name, description=f"Recipe auto's candidate from {base.name}: {settings}.", layers=tuple(layers),
        preprocessing={**({"augment": augment} if augment else {}), "rescale": base.preprocessing["rescale"]},
        optimizer=optimizer, max_epochs=MAX_EPOCHS, input_shape=input_shape, reported=None)
