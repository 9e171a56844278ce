"""TrainConfig: every setting of a training run, validated in one place (no Keras import here).

Also the launch options of a data-parallel run (which process, which coordinator), checked
before any device is touched, and the dataset a config names (:func:`load_data`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit import datasets
from cnnkit.datasets import Dataset
from cnnkit.errors import ConfigError
from cnnkit.presets import Preset, get_preset

SCHEDULES = ("constant", "cosine", "warmup-cosine", "plateau")
MODES = ("data-parallel",)
LAUNCH_FIELDS = ("distribute", "coordinator", "num_processes", "process_id")


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved as the run's ``config.json``.

    ``None`` means "the preset's value", resolved by :meth:`resolve`.
    """

    preset: str | None = None  # None or "auto": chosen from the data (cnnkit.training.auto); MNIST: "fast"
    data: str = "mnist"
    data_source: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: str | None = None
    early_stopping: int | None = None  # patience in epochs on val_loss; None = off
    max_minutes: float | None = None  # time budget: no epoch starts that would end past it
    steps_per_epoch: int | None = None  # cap on batches per epoch (Keras' steps_per_epoch); None = all
    val_fraction: float = 0.1
    seed: int = 0
    train_limit: int | None = None  # stratified subset of the training set (quick runs, tests)
    test_limit: int | None = None
    # Image folders only:
    image_size: int | None = None  # decode size (square); None: the preset's input size
    resize: str = "stretch"  # stretch | crop | pad, stored in the model's metadata
    label_regex: str | None = None  # class from the file name (flat folders)
    test_fraction: float = 0.2
    train_per_class: int | None = None  # article 003's protocol: N training images per class, rest held out
    # auto | none | balanced | NAME=W,...: see cnnkit.training.balance (auto: balanced past a 3:1 imbalance).
    class_weight: str = "auto"
    near_duplicates: str = "group"  # image folders: group | drop | off (cnnkit.datasets.duplicates)
    color_mode: str | None = None  # image folders: grayscale | rgb; None: the recipe's (auto: the folder's)
    # Minutes of training the epochs are planned to fill (cnnkit.training.budget); None: the recipe's epochs.
    budget: float | None = None
    # A pretrained backbone under the head (cnnkit.models.backbones; recipe "transfer" unless another is named),
    # its weights (imagenet | none | a file's path), and the epochs of stage 2 (cnnkit.training.transfer).
    backbone: str | None = None
    weights: str = "imagenet"
    fine_tune: int | None = None
    # Compute precision: None = the preset's choice where this machine runs it fast, else float32
    # (cnnkit.models.resolve_precision). The saved model always computes in float32.
    precision: str | None = None
    # Data-parallel training (cnnkit.training.distributed); None everywhere: one device, as before.
    distribute: str | None = None  # "data-parallel": every device of every process (JAX backend)
    coordinator: str | None = None  # HOST:PORT of process 0, for runs of several processes
    num_processes: int | None = None
    process_id: int | None = None  # this process; 0 writes the run folder

    @property
    def is_folder(self) -> bool:
        return Path(self.data).is_dir() or self.data.endswith(".csv")

    def folder_options(self, preset: Preset) -> dict[str, Any]:
        """The options a folder loader needs (size and colour mode from the preset unless overridden)."""
        return {"image_size": self.image_size or tuple(preset.input_shape[:2]),
                "color_mode": self.color_mode or preset.color_mode, "resize": self.resize,
                "label_regex": self.label_regex, "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction, "seed": self.seed, "train_per_class": self.train_per_class,
                "near_duplicates": self.near_duplicates}

    def resolve(self) -> "TrainConfig":
        """Fill the preset's values in and validate every field (errors name the field)."""
        # Recipe auto is chosen from the data (cnnkit.training.auto.prepare); without it, the old defaults.
        default = "transfer" if self.backbone else ("photo" if self.is_folder else "fast")
        preset = recipe_of(dataclasses.replace(self, preset=self.preset if self.preset not in (None, "auto") else default))
        resolved = dataclasses.replace(
            self,
            preset=preset.name,
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
            (r.near_duplicates in ("group", "drop", "off"), "near_duplicates", "one of ('group', 'drop', 'off')"),
            (r.color_mode in (None, "grayscale", "rgb"), "color_mode", "one of ('grayscale', 'rgb')"),
            (r.fine_tune is None or r.fine_tune >= 0, "fine_tune", "≥ 0 (epochs)"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"Expected {name} {expected}. Received: {name}={getattr(r, name)!r}.",
                                  f"Set {name} {expected}.", params=name)
        check_launch(resolved)
        if (r.fine_tune or r.weights != "imagenet") and not preset.backbone:
            given = "fine_tune" if r.fine_tune else "weights"
            raise ConfigError(f"Expected a backbone with {given}: recipe {preset.name} has none. "
                              f"Received: {given}={getattr(r, given)!r}, backbone=None.",
                              "Name one with backbone (see `cnnkit backbones`), or leave fine_tune and weights out.",
                              params=(given, "backbone"))
        from cnnkit.models import resolve_precision  # here, not at the top: it imports Keras

        resolved = dataclasses.replace(resolved, precision=resolve_precision(self.precision, preset))
        if resolved.is_folder and resolved.image_size is None and preset.input_shape[0] == preset.input_shape[1]:
            # Recorded in config.json, so the run is evaluated later at the size it was trained on.
            resolved = dataclasses.replace(resolved, image_size=preset.input_shape[0])
        return resolved

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values (config.json's ``train`` section)."""
        return dataclasses.asdict(self)


def recipe_of(config: TrainConfig) -> Preset:
    """The preset ``config`` trains: the one it names, with its ``backbone`` and ``fine_tune`` put in.

    A backbone without a recipe trains recipe ``transfer``, at the backbone's own input size.
    """
    name = config.preset if config.preset not in (None, "auto") else ("transfer" if config.backbone else "photo")
    preset = get_preset(name)
    if config.backbone:
        from cnnkit.models.backbones import get_backbone  # the registry is data: no Keras import

        if not preset.backbone:
            raise ConfigError(f"Recipe {name} is not built on a backbone, so it takes none. "
                              f"Received: preset={name!r}, backbone={config.backbone!r}.",
                              "Leave the recipe out (recipe transfer takes the backbone), or leave out backbone.",
                              params=("preset", "backbone"))
        size = get_backbone(config.backbone).input_size
        preset = dataclasses.replace(preset, backbone=config.backbone, input_shape=(size, size, preset.input_shape[-1]))
    if config.fine_tune is not None and preset.backbone:
        preset = dataclasses.replace(preset, fine_tune=config.fine_tune)
    return preset


def load_data(config: TrainConfig, inspected: Any = None) -> Dataset:
    """The dataset ``config`` names, subsampled (stratified, seeded) when it sets limits.

    ``inspected``: a folder already indexed and profiled (:func:`cnnkit.datasets.photos.inspect_folder`).
    """
    options = config.folder_options(get_preset(config.preset)) if config.is_folder else {}
    if inspected is not None:
        options["inspected"] = inspected
    dataset = datasets.load(config.data, source=config.data_source, **options)
    return dataset.subset(train=config.train_limit, test=config.test_limit, seed=config.seed)


def parse_coordinator(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:1234`` for IPv6) into host and port; raise ConfigError if malformed.

    Example:
        >>> parse_coordinator("10.0.0.1:1234")
        ('10.0.0.1', 1234)
    """
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536:
        return host, int(port)
    raise ConfigError(f"Expected coordinator as HOST:PORT with a port in 1-65535. Received: coordinator={address!r}.",
                      "Pass process 0's address and a free port as coordinator (e.g. 10.0.0.1:1234), the same on "
                      "every process.", params="coordinator")


def check_launch(config: TrainConfig) -> None:
    """Validate the data-parallel launch options of ``config`` (no device is touched); raise ConfigError."""
    mode, coordinator, processes, pid = (getattr(config, name) for name in LAUNCH_FIELDS)
    if mode is not None and mode not in MODES:
        raise ConfigError(f"Unknown distribution. Expected one of {MODES}. Received: distribute={mode!r}.",
                          f"Set distribute to {MODES[0]!r}.", params="distribute")
    if mode is None and (coordinator or processes is not None or pid is not None):
        raise ConfigError("Expected distribute='data-parallel' with coordinator, num_processes or process_id. "
                          "Received: distribute=None.", "Set distribute to 'data-parallel'.",
                          params=("distribute", "coordinator", "num_processes", "process_id"))
    if processes is not None and processes < 1:
        raise ConfigError(f"Expected num_processes ≥ 1. Received: num_processes={processes}.",
                          "Pass the number of processes that join the run (one per host, usually).",
                          params="num_processes")
    if (processes or 1) > 1 and not coordinator:
        raise ConfigError(f"Expected a coordinator (HOST:PORT) with num_processes={processes}. "
                          "Received: coordinator=None.",
                          "Pass process 0's address as coordinator (e.g. 10.0.0.1:1234) on every process.",
                          params=("coordinator", "num_processes"))
    if coordinator:
        parse_coordinator(coordinator)
        if processes is None:
            raise ConfigError("Expected num_processes with a coordinator. Received: num_processes=None.",
                              "Pass the number of processes that join the run as num_processes, the same on every "
                              "process.", params="num_processes")
    if (processes or 1) > 1 and pid is None:
        raise ConfigError(f"Expected process_id in [0, {processes}) with num_processes={processes}. "
                          "Received: process_id=None.", "Give each process its own process_id; 0 is the one that "
                          "writes.", params="process_id")
    if pid is not None and not 0 <= pid < (processes or 1):
        raise ConfigError(f"Expected process_id in [0, {processes or 1}). Received: process_id={pid}.",
                          f"Process ids run from 0 to num_processes − 1 ({(processes or 1) - 1}); process 0 is the "
                          "coordinator and the only one that writes the run folder.",
                          params=("process_id", "num_processes"))
    if (processes or 1) > 1 and config.budget:
        raise ConfigError(f"Expected no budget in a multi-process run. Received: budget={config.budget}.",
                          "Each process would measure its own speed and plan other epochs; set epochs instead.",
                          params=("budget", "epochs"))
    if (processes or 1) > 1 and config.max_minutes:
        raise ConfigError(f"Expected no max_minutes in a multi-process run. Received: max_minutes={config.max_minutes}.",
                          "Each process would stop at its own clock and the others would wait forever; "
                          "use epochs or early_stopping (decided on validation loss, the same everywhere).",
                          params=("max_minutes", "epochs", "early_stopping"))


def relaunch(saved: TrainConfig, launch: TrainConfig) -> TrainConfig:
    """The saved config of a run to resume, with this launch's distribution options where it gives them.

    A run's settings come from its ``config.json``; where each process runs is a property of
    the launch (the coordinator's port may change, every process has its own ``--process-id``).
    """
    given = {name: getattr(launch, name) for name in LAUNCH_FIELDS if getattr(launch, name) is not None}
    return dataclasses.replace(saved, **{**given, "process_id": launch.process_id})
