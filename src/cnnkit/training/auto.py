"""``--recipe auto``: a recipe, an input size and a colour mode chosen from the data, and a time budget.

- MNIST keeps ``fast``.
- Small images (longer native side at most :data:`SMALL_SIDE`: digits, icons, CIFAR-like arrays)
  stay at their native size and colour (a 28x28 grey folder trains as 28x28x1) with the
  ``small`` recipe.
- Photos get recipe ``transfer`` when a backbone's ImageNet weights are already on this machine
  (in Keras' folder, with the hash Keras pins: :data:`AUTO_BACKBONES`, in order of preference),
  and say so. When none are, training (:func:`prepare`, never ``show`` or ``verify``) fetches the
  first one's through the pinned-hash fetch, in :data:`~cnnkit.models.weights.AUTO_TIMEOUT` seconds
  of silence at most, after one line naming the file, its size and the URL; offline, or with a wrong
  hash, one line says so and the photos train from scratch. ``weights="none"``, ``$CNNKIT_OFFLINE``
  and a run of several processes (each would write the same file) fetch nothing.
- Other photos get the ``photo`` recipe at a side chosen from their native sizes (the median shorter
  side rounded down to a multiple of 16, between 32 and 160), made smaller when the budget would not
  hold three quarters of the recipe's own epochs at that side (:func:`fit_side`).
- Unless ``--epochs`` is given, the epochs are planned to fill :data:`DEFAULT_BUDGET_MINUTES` of
  training (:mod:`cnnkit.training.budget`).

Whatever the user set (``--recipe``, ``--image-size``, ``--color-mode``, ``--epochs``, ``--budget``)
wins. :func:`prepare` resolves the config and loads the data once; the choice and its reason go
in one printed line and in ``config.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnkit import datasets
from cnnkit.datasets import Dataset
from cnnkit.datasets.photos import Inspected, inspect_folder
from cnnkit.errors import ConfigError
from cnnkit.presets import as_preset
from cnnkit.training.config import DEFAULT_BUDGET_MINUTES, TrainConfig, load_data

if TYPE_CHECKING:
    from cnnkit.models.backbones import Backbone

SMALL_SIDE = 64  # native pixels: at most this on the longer side is a small image, kept at its size
PHOTO_SIDES = (32, 160)  # the photo recipe's side, from the photos' median shorter side
MIN_PHOTO_SIDE = 64  # a budget may shrink the side this far, not further
# Pixels before epochs (benchmarks/RESULTS.md, weather photos): photo at 128 px scored the same after 60 epochs
# as after 69-91, while 80-112 px with 63-100 epochs scored a point lower. So a budget keeps the side while it
# holds this share of the recipe's epochs, and shrinks it only below.
MIN_EPOCH_SHARE = 0.75
# fit_side times steps of at most this many pixels (32 images of 80x80), of no fewer than MIN_PROBE_BATCH images:
# a step's memory grows with its pixels (32 photos at 160x160 took 800 MB, more than the whole 3-minute run at
# the 64 px it then chose), while an image's share of a step's time hardly depends on the batch from 8 images up
# (at 160 px, 19-24 ms an image in batches of 8 against 19-20 ms in batches of 32; benchmarks/train_memory.py).
PROBE_PIXELS = 32 * 80 * 80
MIN_PROBE_BATCH = 8
# The backbones auto may use, best first for a CPU: accuracy for the arithmetic (cnnkit backbones).
AUTO_BACKBONES = ("efficientnet_v2_b0", "mobilenet_v3_large", "convnext_tiny", "resnet50", "mobilenet_v3_small")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    """What auto chose, and the one line that says why."""

    recipe: str
    image_size: int | None
    color_mode: str | None
    reason: str
    backbone: str | None = None


def choose_for_folder(inspected: Inspected, config: TrainConfig, *, fetch: bool = False) -> Choice:
    """The recipe, side and colour mode for a folder, from its profile; the user's own settings win.

    ``fetch``: photos with no verified weights here fetch the preferred backbone's (:func:`_fetched_backbone`);
    only training asks for it, so ``show`` and ``verify`` never download (nor load Keras).
    """
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
    backbone, how, without = None, "are on this machine", ""
    if config.weights in (None, "none"):
        without = " (weights='none')"
    else:
        backbone = _ready_backbone()
        if backbone is None and fetch:
            backbone, without = _fetched_backbone(config)
            how = "were fetched"
    if backbone is not None:
        side = config.image_size or backbone.input_size
        return Choice("transfer", side, config.color_mode or colour,
                      f"{seen}: photos, and the ImageNet weights of {backbone.name} {how} -> recipe "
                      f"transfer on {backbone.name} at {side}x{side}", backbone=backbone.name)
    side = config.image_size or max(PHOTO_SIDES[0], min(PHOTO_SIDES[1], min(height, width) // 16 * 16))
    without = f", without pretrained weights{without}" if without else ""
    return Choice("photo", side, config.color_mode or colour,
                  f"{seen}: photos{without} -> recipe photo at {side}x{side}")


def _ready_backbone() -> Backbone | None:
    """The first of :data:`AUTO_BACKBONES` whose ImageNet weights are here and verified, or ``None``."""
    from cnnkit.models.backbones import get_backbone
    from cnnkit.models.weights import weights_ready

    return next((get_backbone(name) for name in AUTO_BACKBONES if weights_ready(get_backbone(name))), None)


def _fetched_backbone(config: TrainConfig) -> tuple[Backbone | None, str]:
    """The first of :data:`AUTO_BACKBONES`, its ImageNet weights fetched now; else ``None`` and why, in brackets.

    One line names the file, its size and the URL before the download; a failure is one more line, and
    the photos train from scratch. A weights file given by path is the user's own: nothing is fetched over it.
    """
    from cnnkit.models import weights
    from cnnkit.models.backbones import get_backbone

    backbone = get_backbone(AUTO_BACKBONES[0])
    if config.weights != "imagenet":
        return None, ""
    if weights.offline():
        return None, f" (${weights.OFFLINE_ENV} forbids the download)"
    if (config.num_processes or 1) > 1:
        return None, " (a run of several processes downloads none)"
    log.info(f"Fetching {backbone.weights_file} ({backbone.weights_size / 1e6:.1f} MB) from "
             f"{weights.weights_url(backbone)}: the ImageNet weights of {backbone.name}, for recipe auto.")
    try:
        weights.fetch_weights(backbone, timeout=weights.AUTO_TIMEOUT, quiet=True)
    except weights.WeightsUnavailable as error:
        why = "Refused the download, its hash is not the one Keras pins" if error.refused else "No network"
        log.warning(f"{why}: training from scratch (recipe photo); put {backbone.weights_file} in "
                    f"{weights.keras_models_dir()} for transfer learning.")
        return None, (f" ({backbone.weights_file} refused: not the hash Keras pins)" if error.refused
                      else f" ({backbone.weights_file} could not be fetched)")
    return backbone, ""


def choose_for_arrays(dataset: Dataset) -> Choice:
    """The recipe for arrays (``.npz``): they are used at their own size and colour."""
    height, width, channels = dataset.input_shape
    kind = "grey" if channels == 1 else "colour"
    if max(height, width) <= SMALL_SIDE:
        return Choice("small", None, None, f"arrays of {width}x{height} {kind} images: small images -> recipe small")
    return Choice("photo", None, None, f"arrays of {width}x{height} {kind} images: photos -> recipe photo")


def fit_side(choice: Choice, inspected: Inspected, config: TrainConfig, budget: float) -> Choice:
    """``choice`` at a smaller side when the budget would not hold :data:`MIN_EPOCH_SHARE` of the recipe's
    epochs at its side.

    The time of an epoch at the chosen side is measured on random pixels (:func:`probe_plan`: nothing
    is decoded yet); an epoch's work grows with the pixels, so the side shrinks with the square root
    of the epochs missing, to a multiple of 16 and no less than :data:`MIN_PHOTO_SIDE`.
    """
    from cnnkit.training.fit import probe_plan  # Keras: only when a budget is planned

    n = int(inspected.profile.readable.sum())
    classes = len(inspected.index.class_names)
    n_train = (config.train_per_class * classes if config.train_per_class
               else int(n * (1 - config.test_fraction - config.val_fraction)))
    n_val = int(n * config.val_fraction)
    trial = dataclasses.replace(config, recipe=choice.recipe, image_size=choice.image_size,
                                color_mode=choice.color_mode, budget=budget).resolve()
    preset, side = trial.preset, trial.image_size or trial.preset.input_shape[0]
    channels = 3 if choice.color_mode == "rgb" else 1
    # An epoch's time is the same in smaller steps, and the probe's memory much less (PROBE_PIXELS).
    probe = dataclasses.replace(trial, batch_size=min(trial.batch_size, max(MIN_PROBE_BATCH, PROBE_PIXELS // side**2)))
    epochs = probe_plan(probe, (side, side, channels), classes, max(1, n_train), max(1, n_val)).epochs
    wanted = math.ceil(MIN_EPOCH_SHARE * preset.epochs)
    if epochs >= wanted:
        return choice
    smaller = max(MIN_PHOTO_SIDE, int(side * math.sqrt(epochs / wanted)) // 16 * 16)
    if smaller >= side:
        return choice
    why = (f"; at {side}x{side} the {budget:g}-minute budget holds {epochs} of the recipe's {preset.epochs} epochs, "
           f"so {smaller}x{smaller}")
    return dataclasses.replace(choice, image_size=smaller,
                               reason=choice.reason.replace(f"at {side}x{side}", f"at {smaller}x{smaller}") + why)


def folder_options(config: TrainConfig) -> dict[str, Any]:
    """The folder options ``cnnkit train`` would use for ``config`` (auto's size and colour included), so
    that ``cnnkit show`` and ``verify`` decode what training will and share its pixel cache.

    A budget that shrinks the photos' side (:func:`fit_side`) is not timed here: ``show`` and ``verify``
    load no Keras, so they decode at the side the photos themselves suggest."""
    if config.recipe not in (None, "auto"):
        return config.folder_options(as_preset(config.recipe))
    inspected = inspect_folder(config.data, label_regex=config.label_regex)
    choice = choose_for_folder(inspected, config)
    chosen = dataclasses.replace(config, image_size=choice.image_size, color_mode=choice.color_mode,
                                 backbone=choice.backbone)
    return {**chosen.folder_options(as_preset(choice.recipe)), "inspected": inspected}


def prepare(config: TrainConfig, given: Dataset | None = None, *,
            own_model: bool = False) -> tuple[TrainConfig, Dataset, str]:
    """Resolve ``config`` (recipe auto included) and load its dataset once; the last item says what auto chose.

    Recipe auto on photos may fetch a backbone's ImageNet weights here (:func:`choose_for_folder`, ``fetch``).
    ``given``: data already in memory (a notebook's), used instead of loading ``config.data``.
    ``own_model``: the caller brings the model; the recipe gives only its training settings, for its own
    epochs (a budget is planned on the recipe's network, which is not the one trained).

    Example:
        >>> config, dataset, why = prepare(TrainConfig(data="photos/"))  # doctest: +SKIP
        >>> why  # doctest: +SKIP
        'Recipe auto: 1,096 images, median 284x183 colour: photos -> recipe photo at 160x160; budget 15 min.'
    """
    if own_model and config.budget:
        raise ConfigError(f"A budget plans the epochs of a recipe's own network, not of a model given. "
                          f"Received: budget={config.budget!r} with model.",
                          "Set epochs instead of budget, or leave model out.", params=("budget", "model"))
    if given is not None:
        return _prepare_given(config, given, own_model)
    if config.recipe not in (None, "auto") or config.backbone or config.data in datasets.BUILTIN:
        config = config.resolve()
        return config, load_data(config), ""
    inspected = None
    several = (config.num_processes or 1) > 1  # each process would plan from its own clock: epochs instead
    budget = config.budget if config.budget is not None or config.epochs or several else DEFAULT_BUDGET_MINUTES
    if config.is_folder:
        inspected = inspect_folder(config.data, label_regex=config.label_regex)
        choice = choose_for_folder(inspected, config, fetch=True)
        if choice.recipe == "photo" and budget and config.image_size is None:
            choice = fit_side(choice, inspected, config, budget)
    else:
        choice = choose_for_arrays(datasets.load(config.data))
    config = dataclasses.replace(config, recipe=choice.recipe, image_size=choice.image_size,
                                 color_mode=choice.color_mode, budget=budget, backbone=choice.backbone).resolve()
    plan = f"; budget {budget:g} min" if budget else f"; {config.epochs} epochs"
    return config, load_data(config, inspected=inspected), f"Recipe auto: {choice.reason}{plan}."


def _prepare_given(config: TrainConfig, given: Dataset, own_model: bool) -> tuple[TrainConfig, Dataset, str]:
    """:func:`prepare` for a dataset in memory: recipe auto chooses from its arrays, as for an ``.npz`` file."""
    why = ""
    if config.recipe in (None, "auto") and not config.backbone and config.data not in datasets.BUILTIN:
        choice = choose_for_arrays(given)
        several = (config.num_processes or 1) > 1
        budget = None if own_model or config.epochs or several else config.budget or DEFAULT_BUDGET_MINUTES
        config = dataclasses.replace(config, recipe=choice.recipe, budget=budget)
        plan = f"budget {budget:g} min" if budget else f"{config.epochs} epochs" if config.epochs else "its epochs"
        why = f"Recipe auto: {choice.reason}; {plan}."
    config = config.resolve()
    if own_model:
        config = dataclasses.replace(config, precision="float32")  # the model computes in the dtype it was built in
    return config, given.subset(train=config.train_limit, test=config.test_limit, seed=config.seed), why
