"""TrainConfig: every setting of a training run, validated in one place (no Keras import here)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import ConfigError
from cnnkit.presets import Preset, get_preset

SCHEDULES = ("constant", "cosine", "warmup-cosine", "plateau")


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved as the run's ``config.json``.

    ``None`` means "the preset's value", resolved by :meth:`resolve`.
    """

    preset: str | None = None  # None: "fast" for MNIST-like arrays, "photo" for a folder of images
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
    # Compute precision: None = the preset's choice where this machine runs it fast, else float32
    # (cnnkit.models.resolve_precision). The saved model always computes in float32.
    precision: str | None = None
    # Data-parallel training (cnnkit.distributed); None everywhere: one device, as before.
    distribute: str | None = None  # "data-parallel": every device of every process (JAX backend)
    coordinator: str | None = None  # HOST:PORT of process 0, for runs of several processes
    num_processes: int | None = None
    process_id: int | None = None  # this process; 0 writes the run folder

    @property
    def is_folder(self) -> bool:
        return Path(self.data).is_dir() or self.data.endswith(".csv")

    def folder_options(self, preset: Preset) -> dict[str, Any]:
        """The options a folder loader needs (size and colour mode from the preset unless overridden)."""
        return {"image_size": self.image_size or tuple(preset.input_shape[:2]), "color_mode": preset.color_mode,
                "resize": self.resize, "label_regex": self.label_regex, "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction, "seed": self.seed, "train_per_class": self.train_per_class}

    def resolve(self) -> "TrainConfig":
        """Fill the preset's values in and validate every field."""
        preset = get_preset(self.preset or ("photo" if self.is_folder else "fast"))
        resolved = dataclasses.replace(
            self,
            preset=preset.name,
            epochs=self.epochs or preset.epochs,
            batch_size=self.batch_size or preset.batch_size,
            learning_rate=self.learning_rate or preset.optimizer["learning_rate"],
            schedule=self.schedule or preset.schedule,
        )
        checks = [
            (resolved.epochs >= 1, f"epochs must be ≥ 1. Received: epochs={resolved.epochs}.", "--epochs"),
            (resolved.batch_size >= 1, f"batch size must be ≥ 1. Received: batch_size={resolved.batch_size}.",
             "--batch-size"),
            (resolved.learning_rate > 0, f"learning rate must be > 0. Received: {resolved.learning_rate}.", "--lr"),
            (0 < resolved.val_fraction < 1, f"validation fraction must be in (0, 1). Received: {resolved.val_fraction}.",
             "--val-fraction"),
            (resolved.schedule in SCHEDULES, f"Unknown schedule. Expected one of {SCHEDULES}. "
             f"Received: schedule={resolved.schedule!r}.", "--schedule"),
            (resolved.early_stopping is None or resolved.early_stopping >= 1,
             f"early-stopping patience must be ≥ 1. Received: {resolved.early_stopping}.", "--early-stopping"),
            (0 < resolved.test_fraction < 1, f"test fraction must be in (0, 1). Received: {resolved.test_fraction}.",
             "--test-fraction"),
            (resolved.steps_per_epoch is None or resolved.steps_per_epoch >= 1,
             f"steps per epoch must be ≥ 1. Received: {resolved.steps_per_epoch}.", "--steps-per-epoch"),
            (resolved.max_minutes is None or resolved.max_minutes > 0,
             f"time budget must be > 0 minutes. Received: {resolved.max_minutes}.", "--max-minutes"),
        ]
        for ok, message, option in checks:
            if not ok:
                raise ConfigError(message, f"Fix the {option} option.")
        from cnnkit.distributed import check_options  # here, not at the top: they import Keras
        from cnnkit.models import resolve_precision

        check_options(resolved)
        resolved = dataclasses.replace(resolved, precision=resolve_precision(self.precision, preset))
        if resolved.is_folder and resolved.image_size is None and preset.input_shape[0] == preset.input_shape[1]:
            # Recorded in config.json, so the run is evaluated later at the size it was trained on.
            resolved = dataclasses.replace(resolved, image_size=preset.input_shape[0])
        return resolved

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
