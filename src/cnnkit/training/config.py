"""TrainConfig: every setting of a training run, its default, its command-line option and its check, once.

Each field's default is the only one: ``cnnkit train``'s options are made from the fields
(:mod:`cnnkit.options`), flag and help included. No Keras here: the CLI's parser imports this module.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit import artifact, datasets
from cnnkit.datasets import Dataset
from cnnkit.errors import ArtifactError, ConfigError
from cnnkit.options import option
from cnnkit.presets import Preset, as_preset
from cnnkit.training.launch import MODES, check_launch
from cnnkit.tta import check_spec

SCHEDULES = ("constant", "cosine", "warmup-cosine", "plateau")
RESIZES = ("stretch", "crop", "pad")
NEAR_DUPLICATES = ("group", "drop", "off")  # cnnkit.datasets.duplicates.MODES, without importing imagehash here
_FOLDERS = "image folders: "
# auto's budget (benchmarks/RESULTS.md): on 2 CPU cores 70,000 28x28 digits reach 99.4 % in 4 minutes (recipe
# small stops at its max_epochs), and the photo recipe's own 60 epochs at 128 px take about 12 minutes. At
# 10 minutes auto had to train photos below 128 px or for fewer epochs than the recipe it stands in for,
# and scored below it (91.39 % against 92.45 % over 3 seeds), so photos get a little more than the recipe's time.
DEFAULT_BUDGET_MINUTES = 15.0


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved as the run's ``config.json``.

    ``recipe`` is a recipe's name or the :class:`~cnnkit.presets.Preset` itself; ``None`` (or ``"auto"``)
    lets :func:`cnnkit.training.auto.prepare` choose from the data (MNIST: ``"fast"``). ``epochs``,
    ``batch_size`` and ``learning_rate`` left at 0, and ``schedule`` at ``None``, take the recipe's value.
    :meth:`resolve` fills them in, puts the recipe's data in ``recipe`` and validates every field.

    Example:
        >>> config = TrainConfig(recipe="fast", epochs=1).resolve()
        >>> config.preset.name, config.batch_size, config.epochs
        ('fast', 256, 1)
    """

    recipe: str | Preset | None = option(
        None, "--recipe", hidden=("--preset",), metavar="RECIPE",
        help="recipe name (see `cnnkit summary --list`), or auto; default: fast for MNIST, auto (chosen from the "
             "data) for folders, manifests and .npz arrays")
    data: str = "mnist"  # a positional argument of the commands, not an option
    data_source: str | None = option(None, "--from", metavar="PATH",
                                     help="use MNIST files you already have (IDX files or mnist.npz)")
    epochs: int = option(0, "--epochs")  # 0: the recipe's (so a resolved config's are plain numbers)
    batch_size: int = option(0, "--batch-size")
    learning_rate: float = option(0.0, "--lr", help="peak learning rate")
    schedule: str | None = option(None, "--schedule", choices=SCHEDULES)
    early_stopping: int | None = option(None, "--early-stopping", metavar="PATIENCE",
                                        help="stop after PATIENCE epochs without val_loss gain")
    max_minutes: float | None = option(None, "--max-minutes", help="time budget: stop at the last epoch that fits")
    steps_per_epoch: int | None = option(None, "--steps-per-epoch", metavar="N", help="at most N batches per epoch")
    val_fraction: float = option(0.1, "--val-fraction",
                                 help="share of the training set held out (default %(default)s)")
    seed: int = option(0, "--seed")
    train_limit: int | None = option(None, "--train-limit", metavar="N",
                                     help="train on a stratified subset of N images")
    test_limit: int | None = option(None, "--test-limit", metavar="N",
                                    help="evaluate on a stratified subset of N images")
    image_size: int | None = option(None, "--image-size", metavar="PIXELS",
                                    help=_FOLDERS + "decode size (default: the recipe's)")
    resize: str = option("stretch", "--resize", choices=RESIZES, help=_FOLDERS + "resize policy")
    label_regex: str | None = option(None, "--label-regex",
                                     help=_FOLDERS + "class = group 1 of this regex on the file name")
    test_fraction: float = option(0.2, "--test-fraction", help=_FOLDERS + "share held out for test")
    # Article 003's protocol: N training images per class, the rest held out.
    train_per_class: int | None = option(None, "--train-per-class", metavar="N",
                                         help=_FOLDERS + "N training images per class")
    color_mode: str | None = option(
        None, "--color-mode", choices=("grayscale", "rgb"),
        help=_FOLDERS + "colour mode to train in (default: the recipe's; auto: the folder's)")
    near_duplicates: str = option(  # cnnkit.datasets.duplicates
        "group", "--near-duplicates", choices=NEAR_DUPLICATES,
        help=_FOLDERS + "look-alike images (resized, re-encoded, rotated, cropped copies) are kept in one split "
                        "(%(default)s, default), once (drop), or not looked for (off)")
    exclude: str | None = option(  # cnnkit.datasets.exclude: an audit's suspects, or any CSV with a path column
        None, "--exclude", metavar="CSV",
        help="leave out the images this CSV lists in its path column (an audit's suspects.csv: the rows not "
             "decided keep; for arrays, rows named train[12], test[5])")
    # Minutes of training the epochs are planned to fill (cnnkit.training.budget); None: the recipe's epochs.
    budget: float | None = option(
        None, "--budget", metavar="MINUTES",
        help="plan the epochs to fill this much training time (measured on the first steps); recipe auto plans "
             f"{DEFAULT_BUDGET_MINUTES:g} minutes unless --epochs is given")
    class_weight: str = option(  # cnnkit.training.balance: auto is balanced past a 3:1 imbalance
        "auto", "--class-weight", metavar="auto|none|balanced|NAME=W,...",
        help="weigh each class's loss: balanced (n / (classes x n_class)), your own weights, none, or %(default)s "
             "(default: balanced when the largest class has 3x the images of the smallest)")
    # A pretrained backbone under the head (cnnkit.models.backbones), its weights, and stage 2's epochs
    # (cnnkit.training.transfer).
    backbone: str | None = option(
        None, "--backbone", metavar="NAME",
        help="a pretrained network under the head (see `cnnkit backbones`); recipe transfer, at the backbone's "
             "input size unless --image-size")
    weights: str = option(
        "imagenet", "--weights", metavar="imagenet|none|PATH",
        help="the backbone's weights: %(default)s (default; Keras' fetch into $KERAS_HOME/models, hash checked), "
             "none (random), or a weights file")
    fine_tune: int | None = option(
        None, "--fine-tune", metavar="EPOCHS",
        help="after the head: train the backbone's top blocks for EPOCHS more epochs (default 0)")
    # None: the recipe's precision where this machine runs it fast, else float32 (cnnkit.models.resolve_precision).
    precision: str | None = option(
        None, "--precision", choices=("auto", "float32", "mixed_bfloat16"),
        help="compute precision while training (default auto: the recipe's, if this CPU has bfloat16 in "
             "hardware); the saved model computes in float32")
    # Data-parallel training (cnnkit.training.distributed, cnnkit.training.launch); None: one device.
    distribute: str | None = option(None, "--distribute", choices=MODES,
                                    help="train on every device (JAX backend); --batch-size is the global batch")
    coordinator: str | None = option(None, "--coordinator", metavar="HOST:PORT",
                                     help="data-parallel over processes: process 0's address")
    num_processes: int | None = option(None, "--num-processes", metavar="N",
                                       help="data-parallel: processes in the run")
    process_id: int | None = option(None, "--process-id", metavar="I",
                                    help="data-parallel: this process, 0 … N-1 (0 writes)")

    def __post_init__(self) -> None:
        if isinstance(self.data, os.PathLike):
            self.data = os.fspath(self.data)
        if not isinstance(self.data, str):  # a Dataset or arrays: cnnkit.train takes those, a config only names
            raise ConfigError(f"Expected data as a dataset name or path. Received: data={type(self.data).__name__}.",
                              "Pass the Dataset or arrays to cnnkit.train(data, ...) itself; a TrainConfig names "
                              "its data.", params="data")

    @property
    def is_folder(self) -> bool:
        return Path(self.data).is_dir() or self.data.endswith(".csv")

    @property
    def preset(self) -> Preset:
        """The recipe as data, once :meth:`resolve` has put it in ``recipe``."""
        if not isinstance(self.recipe, Preset):
            raise ConfigError("Expected a resolved config, whose recipe is a Preset. "
                              f"Received: recipe={self.recipe!r}.",
                              "Call config.resolve() first.", params="recipe")
        return self.recipe

    @property
    def recipe_name(self) -> str:
        """The recipe's name (``"auto"`` while auto has not chosen)."""
        return self.recipe.name if isinstance(self.recipe, Preset) else self.recipe or "auto"

    def folder_options(self, preset: Preset | None = None) -> dict[str, Any]:
        """The options a folder loader needs (size and colour mode from the recipe unless overridden)."""
        preset = preset or self.preset
        return {"image_size": self.image_size or tuple(preset.input_shape[:2]),
                "color_mode": self.color_mode or preset.color_mode, "resize": self.resize,
                "label_regex": self.label_regex, "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction, "seed": self.seed, "train_per_class": self.train_per_class,
                "near_duplicates": self.near_duplicates, "exclude": self.exclude}

    def resolve(self) -> TrainConfig:
        """Fill the recipe's values in and validate every field (errors name the field)."""
        # Recipe auto is chosen from the data (cnnkit.training.auto.prepare); without it, the old defaults.
        default = "transfer" if self.backbone else ("photo" if self.is_folder else "fast")
        preset = _with_backbone(as_preset(self.recipe if self.recipe not in (None, "auto") else default), self)
        check_spec(preset.tta, f"the tta of recipe {preset.name!r}")  # a recipe made here never met the registry
        resolved = dataclasses.replace(
            self,
            recipe=preset,
            epochs=self.epochs or preset.epochs,
            batch_size=self.batch_size or preset.batch_size,
            learning_rate=self.learning_rate or preset.optimizer["learning_rate"],
            schedule=self.schedule or preset.schedule,
        )
        r = resolved
        checks = [  # (holds, field, what it must be)
            (r.epochs >= 1, "epochs", "≥ 1"),
            (r.batch_size >= 1, "batch_size", "≥ 1"),
            (r.learning_rate > 0, "learning_rate", "> 0"),
            (0 < r.val_fraction < 1, "val_fraction", "in (0, 1)"),
            (r.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}"),
            (r.early_stopping is None or r.early_stopping >= 1, "early_stopping", "≥ 1 (epochs of patience)"),
            (0 < r.test_fraction < 1, "test_fraction", "in (0, 1)"),
            (r.steps_per_epoch is None or r.steps_per_epoch >= 1, "steps_per_epoch", "≥ 1"),
            (r.max_minutes is None or r.max_minutes > 0, "max_minutes", "> 0"),
            (r.budget is None or r.budget > 0, "budget", "> 0 (minutes)"),
            (r.near_duplicates in NEAR_DUPLICATES, "near_duplicates", f"one of {NEAR_DUPLICATES}"),
            (r.color_mode in (None, "grayscale", "rgb"), "color_mode", "one of ('grayscale', 'rgb')"),
            (r.fine_tune is None or r.fine_tune >= 0, "fine_tune", "≥ 0 (epochs)"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"Expected {name} {expected}. Received: {name}={getattr(r, name)!r}.",
                                  f"Set {name} {expected}.", params=name)
        check_launch(resolved)
        # No pretrained weights is what a recipe without a backbone has anyway: weights none asks nothing of it.
        if (r.fine_tune or r.weights not in (None, "imagenet", "none")) and not preset.backbone:
            given = "fine_tune" if r.fine_tune else "weights"
            raise ConfigError(f"Expected a backbone with {given}: recipe {preset.name} has none. "
                              f"Received: {given}={getattr(r, given)!r}, backbone=None.",
                              "Name one with backbone, or leave fine_tune and weights out.",
                              params=(given, "backbone"))
        from cnnkit.models.build import resolve_precision  # here, not at the top: it imports Keras

        resolved = dataclasses.replace(resolved, precision=resolve_precision(self.precision, preset))
        if resolved.is_folder and resolved.image_size is None and preset.input_shape[0] == preset.input_shape[1]:
            # Recorded in config.json, so the run is evaluated later at the size it was trained on.
            resolved = dataclasses.replace(resolved, image_size=preset.input_shape[0])
        return resolved

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values (config.json's ``train`` section; the recipe by name)."""
        values = dataclasses.asdict(dataclasses.replace(self, recipe=None))
        values["recipe"] = None if self.recipe is None else self.recipe_name
        return values

    @classmethod
    def from_run(cls, run_dir: str | Path) -> TrainConfig:
        """The config a run folder's ``config.json`` recorded, with the recipe it trained (as data).

        A tuned recipe, or one changed since, comes back as the run recorded it; nothing is registered.
        """
        path = Path(run_dir) / artifact.CONFIG
        if not path.is_file():
            raise ArtifactError(f"No {artifact.CONFIG} in {run_dir}: not a cnnkit run folder.",
                                "Pass the out folder of a finished training run.")
        saved = artifact.read_json(path)
        train = dict(saved.get("train", {}))
        if "preset" in train:  # the recipe's name, as runs before layout II wrote it
            train.setdefault("recipe", train.pop("preset"))
        names = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in train.items() if k in names})
        recorded = saved.get("preset")
        if recorded:
            config = dataclasses.replace(config, recipe=Preset.from_dict(recorded))
            if config.is_folder and config.image_size is None:
                # Runs made before the size was recorded: decode at the size the model was trained on,
                # not at whatever the recipe says today.
                config = dataclasses.replace(config, image_size=int(recorded["input_shape"][0]))
        return config


def _with_backbone(preset: Preset, config: TrainConfig) -> Preset:
    """``preset`` with ``config``'s ``backbone`` and ``fine_tune`` put in.

    A backbone without a recipe trains recipe ``transfer``, at the backbone's own input size.
    """
    if config.backbone:
        from cnnkit.models.backbones import get_backbone  # the registry is data: no Keras import

        if not preset.backbone:
            raise ConfigError(f"Recipe {preset.name} is not built on a backbone, so it takes none. "
                              f"Received: recipe={preset.name!r}, backbone={config.backbone!r}.",
                              "Leave the recipe out (recipe transfer takes the backbone), or leave out backbone.",
                              params=("recipe", "backbone"))
        size = get_backbone(config.backbone).input_size
        preset = dataclasses.replace(preset, backbone=config.backbone, input_shape=(size, size, preset.input_shape[-1]))
    if config.fine_tune is not None and preset.backbone:
        preset = dataclasses.replace(preset, fine_tune=config.fine_tune)
    return preset


def load_data(config: TrainConfig, inspected: Any = None) -> Dataset:
    """The dataset a resolved ``config`` names, subsampled (stratified, seeded) when it sets limits.

    ``inspected``: a folder already indexed and profiled (:func:`cnnkit.datasets.photos.inspect_folder`).
    """
    options = config.folder_options() if config.is_folder else {}
    if inspected is not None:
        options["inspected"] = inspected
    dataset = datasets.load(config.data, source=config.data_source, **options)
    if config.exclude and not config.is_folder:  # arrays: rows named as an audit names them (train[12])
        from cnnkit.datasets.exclude import exclude_rows

        dataset = exclude_rows(dataset, config.exclude)
    return dataset.subset(train=config.train_limit, test=config.test_limit, seed=config.seed)


def metadata_for(dataset: Dataset, config: TrainConfig, state: dict[str, Any] | None = None) -> artifact.ModelMetadata:
    """The metadata a model trained under ``config`` on ``dataset`` carries (``state``: a checkpoint's progress)."""
    # Arrays (MNIST, .npz) come at their input size; a folder's photos at the sizes its profile measured.
    profile = dataset.profile
    size = list(profile.median_size) if profile is not None else None if config.is_folder else dataset.input_shape[:2]
    native = {"native_size": [int(v) for v in size]} if size else {}
    return artifact.ModelMetadata(
        class_names=list(dataset.class_names), input_shape=list(dataset.input_shape),
        color_mode=dataset.color_mode, resize=dataset.resize, recipe=config.preset.name, dataset=config.data,
        extra={**native, **({"training": state} if state else {})}, tta=dict(config.preset.tta),
    )
