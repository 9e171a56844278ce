"""Recipes as data: the five articles' models, exactly, and our own.

A preset is plain data (KerasHub style): a name, a description, the layers of
the body, the preprocessing that lives inside the model, and every training
hyperparameter pinned, so a library default changing under us (as Adadelta's
learning rate did between Keras 2.2 and 2.3) cannot change a recipe.
``params`` is the parameter count for the preset's own input shape and class
count; the test suite builds every preset and checks it.

The classifier head ``Dense(num_classes, softmax)`` is added by
:func:`cnnkit.models.build_model`, so one body serves any number of classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cnnkit.errors import ConfigError
from cnnkit.tta import check_spec

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
    reported: Reported | None = None

    @property
    def color_mode(self) -> str:
        return "grayscale" if self.input_shape[-1] == 1 else "rgb"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored in each run's config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preset":
        """The preset a run's ``config.json`` recorded (the inverse of :meth:`to_dict`)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["input_shape"] = tuple(values["input_shape"])
        values["layers"] = tuple((name, dict(kwargs)) for name, kwargs in values["layers"])
        if values.get("reported"):
            values["reported"] = Reported(**values["reported"])
        return cls(**values)


def _conv(filters: int, kernel: int, **kwargs: Any) -> Layer:
    return ("Conv2D", {"filters": filters, "kernel_size": kernel, **kwargs})


def _conv_bn(filters: int, kernel: int = 3, momentum: float = 0.9, **kwargs: Any) -> tuple[Layer, ...]:
    # Bias is redundant before batch norm. Momentum 0.9 (not Keras' 0.99): short runs of a few
    # hundred steps otherwise evaluate with moving statistics that have not caught up.
    return (
        _conv(filters, kernel, padding="same", use_bias=False, **kwargs),
        ("BatchNormalization", {"momentum": momentum}),
        ("ReLU", {}),
    )


def _conv_pool_bn(filters: int, kernel: int = 3, momentum: float = 0.9) -> tuple[Layer, ...]:
    # Pool first, then normalise: batch norm and ReLU run on a quarter of the pixels. Max-pooling
    # commutes with ReLU, and with batch norm's per-channel affine map where its scale is positive,
    # so the net computes nearly the same functions; it trains 1.9x faster on the 2-core CPU
    # (benchmarks/RESULTS.md).
    return (
        _conv(filters, kernel, padding="same", use_bias=False),
        ("MaxPooling2D", {"pool_size": 2}),
        ("BatchNormalization", {"momentum": momentum}),
        ("ReLU", {}),
    )


_POOL: Layer = ("MaxPooling2D", {"pool_size": 2})
_FLAT: Layer = ("Flatten", {})

PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    """Add a preset to the registry (names are unique)."""
    if preset.name in PRESETS:
        raise ConfigError(f"A preset named {preset.name!r} already exists.")
    check_spec(preset.tta, f"the tta of preset {preset.name!r}")
    PRESETS[preset.name] = preset
    return preset


register(Preset(
    name="article-000",
    description="Building a CNN in Keras: Conv64-Conv32-Dense, adam, batch 32, 3 epochs (article: no /255; ours scales in-model).",
    params=203_434,
    input_shape=(28, 28, 1),
    num_classes=10,
    layers=(_conv(64, 3, activation="relu"), _conv(32, 3, activation="relu"), _FLAT),
    optimizer={"name": "adam", "learning_rate": 1e-3},
    batch_size=32,
    epochs=3,
    reported=Reported("val_accuracy", 0.9757, "on the test set used as validation"),
))

register(Preset(
    name="article-001",
    description="Simple CNN using Keras: Conv16-Conv8-Dense, adam, batch 32, 5 epochs (article: no /255; ours scales in-model).",
    params=47_410,
    input_shape=(28, 28, 1),
    num_classes=10,
    layers=(_conv(16, 3, activation="relu"), _conv(8, 3, activation="relu"), _FLAT),
    optimizer={"name": "adam", "learning_rate": 1e-3},
    batch_size=32,
    epochs=5,
    reported=Reported("val_accuracy", 0.9706, "on the test set used as validation"),
))

register(Preset(
    name="article-002",
    description=(
        "Convolutional Neural Networks: 2x(Conv32 5x5) pool 2x(Conv64 3x3) pool Dense128, batch 128, 50 epochs. "
        "The article does not name its optimizer; SGD(0.01), Keras' default, matches its slow first epoch."
    ),
    params=484_714,
    input_shape=(28, 28, 1),
    num_classes=10,
    layers=(
        _conv(32, 5, padding="same", activation="relu"),
        _conv(32, 5, padding="same", activation="relu"),
        _POOL,
        _conv(64, 3, padding="same", activation="relu"),
        _conv(64, 3, padding="same", activation="relu"),
        _POOL,
        _FLAT,
        ("Dense", {"units": 128, "activation": "relu"}),
    ),
    optimizer={"name": "sgd", "learning_rate": 0.01},
    batch_size=128,
    epochs=50,
    reported=Reported("val_accuracy", 0.9888, "on the test set used as validation, after 50 epochs"),
))

register(Preset(
    name="article-003",
    description=(
        "Weather recognition: Conv32-64-128-256 (3x3, each pooled) Dropout0.5 Dense, RGB 150x150, adam, 10 epochs. "
        "Fixed: in-model /255, one softmax unit per class, no test leakage."
    ),
    params=438_596,
    input_shape=(150, 150, 3),
    num_classes=4,
    layers=(
        _conv(32, 3, activation="relu"), _POOL,
        _conv(64, 3, activation="relu"), _POOL,
        _conv(128, 3, activation="relu"), _POOL,
        _conv(256, 3, activation="relu"), _POOL,
        _FLAT,
        ("Dropout", {"rate": 0.5}),
    ),
    optimizer={"name": "adam", "learning_rate": 1e-3},
    batch_size=32,
    epochs=10,
    dataset="weather",
    reported=Reported("val_accuracy", 0.93, "inflated: the article's test set contains training images"),
))

register(Preset(
    name="article-004",
    description=(
        "A simple 2D CNN for MNIST: Conv32-Conv64 pool Dropout Dense128 Dropout, "
        "Adadelta with learning rate 1.0 (the old Keras default, pinned), batch 128, 10 epochs."
    ),
    params=1_199_882,
    input_shape=(28, 28, 1),
    num_classes=10,
    layers=(
        _conv(32, 3, activation="relu"),
        _conv(64, 3, activation="relu"),
        _POOL,
        ("Dropout", {"rate": 0.25}),
        _FLAT,
        ("Dense", {"units": 128, "activation": "relu"}),
        ("Dropout", {"rate": 0.5}),
    ),
    optimizer={"name": "adadelta", "learning_rate": 1.0, "rho": 0.95, "epsilon": 1e-7},
    batch_size=128,
    epochs=10,
    reported=Reported("test_accuracy", 0.9904, "test loss 0.0296"),
))

register(Preset(
    name="fast",
    description=(
        "cnnkit's default, built for time to 99 % on a CPU: crop the empty 2-pixel border, "
        "conv5 16 / conv3 32 (each pooled, then batch-normalised) / conv3 64, dense; Adam with warm-up and "
        "cosine decay to 0 from a peak of 1.5e-2, batch 256, 2 epochs, 2 batches per compiled call, "
        "bfloat16 arithmetic where the CPU has it."
    ),
    params=46_938,
    input_shape=(28, 28, 1),
    num_classes=10,
    layers=(
        # MNIST digits sit in a 20x20 box centred in 28x28: the outer 2 pixels are background.
        ("Cropping2D", {"cropping": 2}),
        # Batch-norm momentum 0.8: in a run of 430 steps the statistics used for validation
        # must follow weights that move fast.
        *_conv_pool_bn(16, 5, momentum=0.8),
        *_conv_pool_bn(32, momentum=0.8),
        *_conv_bn(64, momentum=0.8),
        _FLAT,
    ),
    optimizer={"name": "adam", "learning_rate": 1.5e-2},
    batch_size=256,
    epochs=2,
    schedule="warmup-cosine",
    # bfloat16 arithmetic where the CPU has it (AMX / AVX-512 BF16): same accuracy, faster epochs
    # (benchmarks/RESULTS.md); float32 elsewhere. The saved model computes in float32.
    precision="mixed_bfloat16",
    steps_per_execution=2,
))


register(Preset(
    name="accurate",
    description=(
        "cnnkit's best-accuracy MNIST recipe: random shifts (10 %), rotations (±14°) and zoom (12 %) in the model, "
        "active only in training; conv5 32, two conv3 64, two conv3 128, each with batch norm and ReLU, "
        "the first two stages pooled before normalisation; global max pool, dropout 0.4, dense. "
        "AdamW (weight decay 0.05) with warm-up and cosine decay to 0, batch 128, 27 epochs (10 to 15 "
        "minutes on 2 CPU cores, by the day); predictions average the image and four 1-pixel shifts of it "
        "(test-time augmentation)."
    ),
    params=280_234,
    input_shape=(28, 28, 1),
    num_classes=10,
    # Chosen on the validation split of seeds 0-2 (benchmarks/RESULTS.md): against the previous recipe
    # (Adam, dropout 0.3, ±11° and 10 % zoom, 24 epochs) the same validation accuracy and a lower
    # validation loss on all three seeds; TTA raised validation accuracy by 0.02 points on average.
    preprocessing={"augment": {"translation": 0.1, "rotation": 0.04, "zoom": 0.12}, "rescale": 1 / 255},
    layers=(
        *_conv_pool_bn(32, 5),
        *_conv_bn(64), *_conv_pool_bn(64),
        *_conv_bn(128), *_conv_bn(128),
        ("GlobalMaxPooling2D", {}),
        ("Dropout", {"rate": 0.4}),
    ),
    optimizer={"name": "adamw", "learning_rate": 3e-3, "weight_decay": 0.05},
    batch_size=128,
    epochs=27,
    schedule="warmup-cosine",
    precision="mixed_bfloat16",
    tta={"shift": 1},
))


register(Preset(
    name="photo",
    description=(
        "cnnkit's recipe for a folder of photos: RGB 128x128, flip/rotation/zoom/contrast augmentation in the "
        "model, conv-bn-relu 32-64-128-128 with pooling, global average pooling, dropout 0.3, "
        "Adam with warm-up + cosine decay, batch 32, 60 epochs."
    ),
    params=242_404,
    # 128 px and 60 epochs: +2.3 points on the weather photos' hardest seed over 96 px and 30 epochs
    # (benchmarks/RESULTS.md), still ~7 minutes of training on 2 CPU cores.
    input_shape=(128, 128, 3),
    num_classes=4,
    preprocessing={"augment": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1, "contrast": 0.1},
                   "rescale": 1 / 255},
    layers=(
        *_conv_bn(32), _POOL,
        *_conv_bn(64), _POOL,
        *_conv_bn(128), _POOL,
        *_conv_bn(128),
        ("GlobalAveragePooling2D", {}),
        ("Dropout", {"rate": 0.3}),
    ),
    optimizer={"name": "adam", "learning_rate": 2e-3},
    batch_size=32,
    epochs=60,
    schedule="warmup-cosine",
    dataset="weather",
))


def get_preset(name: str) -> Preset:
    """Return the preset called ``name``; unknown names raise a ConfigError listing the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown preset. Expected one of: {', '.join(PRESETS)}. Received: preset={name!r}.",
            "Run `cnnkit summary --list` to see every preset with its description.",
        ) from None
