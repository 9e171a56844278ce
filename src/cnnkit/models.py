"""Build a Keras model from a preset: raw uint8 pixels in, class probabilities out."""

from __future__ import annotations

from typing import Any

import keras

from cnnkit.errors import ConfigError
from cnnkit.preprocessing import build_preprocessing
from cnnkit.presets import Preset, get_preset

PRECISIONS = ("float32", "mixed_bfloat16")
# Only Keras' own layers are allowed in a preset: the saved model then loads with
# safe_mode on and without any cnnkit code.
_ALLOWED_LAYERS = {
    "Conv2D", "SeparableConv2D", "DepthwiseConv2D", "MaxPooling2D", "AveragePooling2D",
    "GlobalMaxPooling2D", "GlobalAveragePooling2D", "BatchNormalization", "ReLU", "Activation",
    "Dropout", "SpatialDropout2D", "Flatten", "Dense", "Cropping2D",
}


def _make_layer(class_name: str, kwargs: dict[str, Any]) -> keras.layers.Layer:
    if class_name not in _ALLOWED_LAYERS:
        raise ConfigError(
            f"Unsupported layer in preset. Expected one of {sorted(_ALLOWED_LAYERS)}. Received: {class_name!r}."
        )
    return getattr(keras.layers, class_name)(**kwargs)


def build_model(
    preset: Preset | str,
    *,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    preprocessing: dict[str, Any] | None = None,
    precision: str = "float32",
) -> keras.Sequential:
    """Build the preset's network (uncompiled) for raw ``uint8`` input.

    Args:
        preset: a :class:`Preset` or its name (``"article-004"``, ``"fast"`` ...).
        input_shape: ``(height, width, channels)``; defaults to the preset's.
        num_classes: size of the softmax head; defaults to the preset's.
        preprocessing: in-model preprocessing spec; defaults to the preset's.
        precision: ``"float32"``, or ``"mixed_bfloat16"`` (float32 weights, bfloat16 compute;
            the softmax head stays float32). See :func:`to_float32` for saving such a model.

    Example:
        >>> build_model("article-004").count_params()  # doctest: +SKIP
        1199882
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    shape = tuple(input_shape or preset.input_shape)
    classes = num_classes or preset.num_classes
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ConfigError(
            f"Expected input_shape (height, width, channels) with 1 or 3 channels. Received: input_shape={shape}."
        )
    if classes < 2:
        raise ConfigError(f"Expected at least 2 classes. Received: num_classes={classes}.")
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision. Expected one of {PRECISIONS}. Received: precision={precision!r}.")
    spec = preset.preprocessing if preprocessing is None else preprocessing
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # layers take the policy in force when they are made
    try:
        layers = [keras.Input(shape, dtype="uint8", name="pixels")]
        layers += build_preprocessing(spec)
        layers += [_make_layer(name, dict(kwargs)) for name, kwargs in preset.layers]
        # float32 probabilities whatever the compute precision: the loss and the saved model need them.
        layers.append(keras.layers.Dense(classes, activation="softmax", name="probabilities", dtype="float32"))
        return keras.Sequential(layers, name=preset.name.replace("-", "_"))
    finally:
        keras.config.set_dtype_policy(previous)


def bfloat16_is_fast() -> bool:
    """True where bfloat16 matrix arithmetic is in hardware for this backend.

    Checked: TensorFlow on x86 CPUs with AMX or AVX-512 BF16 (oneDNN uses them); elsewhere
    (older CPUs, where bfloat16 is emulated and slower, or XLA on CPU) False.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(requested: str | None, preset: Preset) -> str:
    """``None``/``"auto"``: the preset's precision if this machine runs it fast, else float32."""
    if requested in (None, "auto"):
        return preset.precision if preset.precision == "float32" or bfloat16_is_fast() else "float32"
    if requested not in PRECISIONS:
        raise ConfigError(f"Unknown precision. Expected auto or one of {PRECISIONS}. Received: precision={requested!r}.",
                          "Pass --precision auto, float32 or mixed_bfloat16.")
    return requested


def to_float32(model: keras.Sequential, preset: Preset) -> keras.Sequential:
    """The same network and weights computing in float32: what a mixed-precision run saves.

    Mixed precision keeps every weight in float32, so the copy is exact; only the arithmetic
    changes, and the saved model runs the same everywhere (bfloat16 is fast only on some CPUs).
    """
    if model.dtype_policy.name == "float32":
        return model
    twin = build_model(preset, input_shape=tuple(model.input_shape[1:]), num_classes=model.output_shape[-1])
    twin.set_weights(model.get_weights())
    return twin


_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "adadelta": keras.optimizers.Adadelta,
    "rmsprop": keras.optimizers.RMSprop,
}


def make_optimizer(spec: dict[str, Any], learning_rate: Any = None) -> keras.optimizers.Optimizer:
    """Build an optimizer from a preset spec, every argument explicit.

    ``learning_rate`` (a float or a schedule) overrides the spec's value.
    """
    spec = dict(spec)
    name = spec.pop("name")
    if name not in _OPTIMIZERS:
        raise ConfigError(f"Unknown optimizer. Expected one of {sorted(_OPTIMIZERS)}. Received: {name!r}.")
    if learning_rate is not None:
        spec["learning_rate"] = learning_rate
    return _OPTIMIZERS[name](**spec)
