"""Build a Keras model from a preset: raw uint8 pixels in, class probabilities out."""

from __future__ import annotations

from typing import Any

import keras

from cnnkit.errors import ConfigError
from cnnkit.preprocessing import build_preprocessing
from cnnkit.presets import Preset, get_preset

# Only Keras' own layers are allowed in a preset: the saved model then loads with
# safe_mode on and without any cnnkit code.
_ALLOWED_LAYERS = {
    "Conv2D", "SeparableConv2D", "DepthwiseConv2D", "MaxPooling2D", "AveragePooling2D",
    "GlobalMaxPooling2D", "GlobalAveragePooling2D", "BatchNormalization", "ReLU", "Activation",
    "Dropout", "SpatialDropout2D", "Flatten", "Dense",
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
) -> keras.Sequential:
    """Build the preset's network (uncompiled) for raw ``uint8`` input.

    Args:
        preset: a :class:`Preset` or its name (``"article-004"``, ``"fast"`` ...).
        input_shape: ``(height, width, channels)``; defaults to the preset's.
        num_classes: size of the softmax head; defaults to the preset's.
        preprocessing: in-model preprocessing spec; defaults to the preset's.

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
    spec = preset.preprocessing if preprocessing is None else preprocessing
    layers = [keras.Input(shape, dtype="uint8", name="pixels")]
    layers += build_preprocessing(spec)
    layers += [_make_layer(name, dict(kwargs)) for name, kwargs in preset.layers]
    layers.append(keras.layers.Dense(classes, activation="softmax", name="probabilities"))
    return keras.Sequential(layers, name=preset.name.replace("-", "_"))


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
