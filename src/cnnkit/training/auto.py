"""``--recipe auto``: a recipe, an input size and a colour mode chosen from the data, and a time budget.

- MNIST keeps ``fast``.
- Small images (longer native side at most :data:`SMALL_SIDE`: digits, icons, CIFAR-like arrays)
  stay at their native size and colour (a 28x28 grey folder trains as 28x28x1) with the
  ``small`` recipe.
- Photos get the ``photo`` recipe at a side chosen from their native sizes: the median shorter
  side rounded down to a multiple of 16, between 32 and the recipe's own 128.
- Unless ``--epochs`` is given, the epochs are planned to fill :data:`DEFAULT_BUDGET_MINUTES` of
  training (:mod:`cnnkit.training.budget`).

Whatever the user set (``--recipe``, ``--image-size``, ``--color-mode``, ``--epochs``, ``--budget``)
wins. :func:`prepare` resolves the config and loads the data once; the choice and its reason go
in one printed line and in ``config.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cnnkit import datasets
from cnnkit.datasets import Dataset
from cnnkit.datasets.photos import Inspected, inspect_folder
from cnnkit.presets import get_preset
from cnnkit.training.config import TrainConfig, load_data

SMALL_SIDE = 64  # native pixels: at most this on the longer side is a small image, kept at its size
PHOTO_SIDES = (32, 128)  # the photo recipe's side, from the photos' median shorter side
# auto's budget: on 2 CPU cores, 70,000 28x28 digits train to 99.3 % and the weather photos to about
# 90 % inside it (benchmarks/RESULTS.md); a practitioner gets an answer while making coffee.
DEFAULT_BUDGET_MINUTES = 10.0


@dataclass(frozen=True)
class Choice:
    """What auto chose, and the one line that says why."""

    preset: str
    image_size: int | None
    color_mode: str | None
    reason: str


def choose_for_folder(inspected: Inspected, config: TrainConfig) -> Choice:
    """The recipe, side and colour mode for a folder, from its profile; the user's own settings win."""
    profile = inspected.profile
    height, width = profile.median_size
    colour = "rgb" if profile.colour else "grayscale"
    n = int(profile.readable.sum())
    seen = (f"{n:,} images, median {width}x{height} {'colour' if colour == 'rgb' else 'grey'}"
            + (", all the same size" if profile.uniform else ""))
    if max(height, width) <= SMALL_SIDE:
        side = config.image_size or max(height, width)
        return Choice("small", side, config.color_mode or colour,
                      f"{seen}: small images, kept at {side}x{side} -> recipe small")
    side = config.image_size or max(PHOTO_SIDES[0], min(PHOTO_SIDES[1], min(height, width) // 16 * 16))
    return Choice("photo", side, config.color_mode or colour, f"{seen}: photos -> recipe photo at {side}x{side}")


def choose_for_arrays(dataset: Dataset) -> Choice:
    """The recipe for arrays (``.npz``): they are used at their own size and colour."""
    height, width, channels = dataset.input_shape
    kind = "grey" if channels == 1 else "colour"
    if max(height, width) <= SMALL_SIDE:
        return Choice("small", None, None, f"arrays of {width}x{height} {kind} images: small images -> recipe small")
    return Choice("photo", None, None, f"arrays of {width}x{height} {kind} images: photos -> recipe photo")


def folder_options(config: TrainConfig) -> dict[str, Any]:
    """The folder options ``cnnkit train`` would use for ``config`` (auto's size and colour included), so
    that ``cnnkit show`` and ``verify`` decode what training will and share its pixel cache."""
    if config.preset not in (None, "auto"):
        return config.folder_options(get_preset(config.preset))
    inspected = inspect_folder(config.data, label_regex=config.label_regex)
    choice = choose_for_folder(inspected, config)
    chosen = dataclasses.replace(config, image_size=choice.image_size, color_mode=choice.color_mode)
    return {**chosen.folder_options(get_preset(choice.preset)), "inspected": inspected}


def prepare(config: TrainConfig) -> tuple[TrainConfig, Dataset, str]:
    """Resolve ``config`` (recipe auto included) and load its dataset once; the last item says what auto chose.

    Example:
        >>> config, dataset, why = prepare(TrainConfig(data="photos/"))  # doctest: +SKIP
        >>> why  # doctest: +SKIP
        'Recipe auto: 1,103 images, median 600x400 colour: photos -> recipe photo at 128x128; budget 10 min.'
    """
    if config.preset not in (None, "auto") or config.data in datasets.BUILTIN:
        config = config.resolve()
        return config, load_data(config), ""
    inspected = None
    if config.is_folder:
        inspected = inspect_folder(config.data, label_regex=config.label_regex)
        choice = choose_for_folder(inspected, config)
    else:
        choice = choose_for_arrays(datasets.load(config.data))
    several = (config.num_processes or 1) > 1  # each process would plan from its own clock: epochs instead
    budget = config.budget if config.budget is not None or config.epochs or several else DEFAULT_BUDGET_MINUTES
    config = dataclasses.replace(config, preset=choice.preset, image_size=choice.image_size,
                                 color_mode=choice.color_mode, budget=budget).resolve()
    plan = f"; budget {budget:g} min" if budget else f"; {config.epochs} epochs"
    return config, load_data(config, inspected=inspected), f"Recipe auto: {choice.reason}{plan}."
