"""What a preset is: plain data for one recipe, and the layer shorthands the recipes are written in.

A preset is data (KerasHub style): a name, a description, the layers of the body, the
preprocessing that lives inside the model, and every training hyperparameter pinned, so a
library default changing under us (as Adadelta's learning rate did between Keras 2.2 and 2.3)
cannot change a recipe. ``params`` is the parameter count for the preset's own input shape and
class count; the test suite builds every preset and checks it.

The classifier head ``Dense(num_classes, softmax)`` is added by
:func:`cnnkit.models.build_model`, so one body serves any number of classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

Layer = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Reported:
    """A number an article reported, to print beside ours."""

    metric: str
    value: float
    note: str = ""


@dataclass(frozen=True)
class Preset:
    """One recipe: model body + in-model preprocessing + pinned training settings."""

    name: str
    description: str
    params: int
    input_shape: tuple[int, int, int]
    num_classes: int
    layers: tuple[Layer, ...]
    preprocessing: dict[str, Any] = field(default_factory=lambda: {"rescale": 1 / 255})
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "adam", "learning_rate": 1e-3})
    batch_size: int = 32
    epochs: int = 10
    # The most epochs a time budget may plan (cnnkit.training.budget); 0: the recipe's own epochs.
    max_epochs: int = 0
    schedule: str = "constant"
    # "mixed_bfloat16": train with bfloat16 arithmetic where the machine has it in hardware
    # (cnnkit.models.resolve_precision); the articles' recipes stay float32.
    precision: str = "float32"
    # Batches per call into the compiled training step: fewer round trips from Python, the same
    # training (callbacks see every Nth batch end). 4 ran article 000 11 % faster (RESULTS.md).
    steps_per_execution: int = 4
    # Test-time augmentation the trained model's predictor applies, e.g. {"shift": 1} (cnnkit.tta).
    tta: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    # A pretrained network (cnnkit.models.backbones) under the head instead of ``layers``: trained in two
    # stages (cnnkit.training.transfer), the head on cached features, then ``fine_tune`` epochs of the top.
    backbone: str = ""
    fine_tune: int = 0
    reported: Reported | None = None

    @property
    def color_mode(self) -> str:
        return "grayscale" if self.input_shape[-1] == 1 else "rgb"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored in each run's config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preset:
        """The preset a run's ``config.json`` recorded (the inverse of :meth:`to_dict`)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["input_shape"] = tuple(values["input_shape"])
        values["layers"] = tuple((name, dict(kwargs)) for name, kwargs in values["layers"])
        if values.get("reported"):
            values["reported"] = Reported(**values["reported"])
        return cls(**values)


def conv(filters: int, kernel: int, **kwargs: Any) -> Layer:
    """A ``Conv2D`` layer spec."""
    return ("Conv2D", {"filters": filters, "kernel_size": kernel, **kwargs})


def conv_bn(filters: int, kernel: int = 3, momentum: float = 0.9, **kwargs: Any) -> tuple[Layer, ...]:
    """Conv (no bias, 'same') -> batch norm -> ReLU."""
    # Bias is redundant before batch norm. Momentum 0.9 (not Keras' 0.99): short runs of a few
    # hundred steps otherwise evaluate with moving statistics that have not caught up.
    return (
        conv(filters, kernel, padding="same", use_bias=False, **kwargs),
        ("BatchNormalization", {"momentum": momentum}),
        ("ReLU", {}),
    )


def conv_pool_bn(filters: int, kernel: int = 3, momentum: float = 0.9) -> tuple[Layer, ...]:
    """Conv (no bias, 'same') -> max-pool 2 -> batch norm -> ReLU."""
    # Pool first, then normalise: batch norm and ReLU run on a quarter of the pixels. Max-pooling
    # commutes with ReLU, and with batch norm's per-channel affine map where its scale is positive,
    # so the net computes nearly the same functions; it trains 1.9x faster on the 2-core CPU
    # (benchmarks/RESULTS.md).
    return (
        conv(filters, kernel, padding="same", use_bias=False),
        ("MaxPooling2D", {"pool_size": 2}),
        ("BatchNormalization", {"momentum": momentum}),
        ("ReLU", {}),
    )


POOL: Layer = ("MaxPooling2D", {"pool_size": 2})
FLAT: Layer = ("Flatten", {})
