"""Build a Keras model from a preset: raw uint8 pixels in, preprocessing, body, softmax head.

Also the precision a run trains in (:func:`resolve_precision`) and the float32 twin a
mixed-precision run saves (:func:`to_float32`).
"""

from __future__ import annotations

from typing import Any

from cnnkit import _backend
from cnnkit._backend import keras
from cnnkit.errors import ConfigError
from cnnkit.models.preprocessing import build_preprocessing
from cnnkit.models.transfer import backbone_layers
from cnnkit.presets import Preset, as_preset

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
    recipe: Preset | str,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    preprocessing: dict[str, Any] | None = None,
    precision: str = "float32",
) -> keras.Sequential:
    """Build the recipe's network (uncompiled) for raw ``uint8`` input.

    Args:
        recipe: a :class:`Preset` or a built-in recipe's name (``"article-004"``, ``"fast"`` ...).
        input_shape: ``(height, width, channels)``; defaults to the preset's.
        num_classes: size of the softmax head; defaults to the preset's.
        preprocessing: in-model preprocessing spec; defaults to the preset's.
        precision: ``"float32"``, or ``"mixed_bfloat16"`` (float32 weights, bfloat16 compute;
            the softmax head stays float32). See :func:`to_float32` for saving such a model.

    Example:
        >>> build_model("article-004").count_params()  # doctest: +SKIP
        1199882
    """
    preset = as_preset(recipe)
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
    try:
        return _sequential(preset, shape, classes, spec, precision)
    except ValueError as exc:  # Keras' shape inference: the layers shrink this input to nothing
        if "zero or negative" not in str(exc) and "negative dimension" not in str(exc).lower():
            raise
        smallest = next((side for side in _SIDES if side > min(shape[:2]) and _fits(preset, side, shape[-1])), None)
        raise ConfigError(
            f"The input is too small for the layers of {preset.name}: they shrink a {shape[0]}x{shape[1]} image "
            f"to nothing. Received: input_shape={shape}.",
            f"Use an image_size of at least {smallest}." if smallest else "Use a larger image_size.",
            params="image_size") from None


_SIDES = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 512, 1024)


def _fits(preset: Preset, side: int, channels: int) -> bool:
    try:
        _sequential(preset, (side, side, channels), 2, {}, "float32")
    except ValueError:
        return False
    return True


def _sequential(preset: Preset, shape: tuple[int, ...], classes: int, spec: dict[str, Any],
                precision: str) -> keras.Sequential:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # layers take the policy in force when they are made
    try:
        layers = [keras.Input(shape, dtype="uint8", name="pixels")]
        layers += build_preprocessing(spec)
        if preset.backbone:  # a pretrained network (random weights until cnnkit.models.transfer loads them)
            layers += backbone_layers(preset.backbone, shape)
        layers += [_make_layer(name, dict(kwargs)) for name, kwargs in preset.layers]
        # float32 probabilities whatever the compute precision: the loss and the saved model need them.
        layers.append(keras.layers.Dense(classes, activation="softmax", name="probabilities", dtype="float32"))
        return keras.Sequential(layers, name=preset.name.replace("-", "_"))
    finally:
        keras.config.set_dtype_policy(previous)


def resolve_precision(requested: str | None, preset: Preset) -> str:
    """``None``/``"auto"``: the preset's precision if this machine runs it fast, else float32."""
    if requested in (None, "auto"):
        return preset.precision if preset.precision == "float32" or _backend.bfloat16_is_fast() else "float32"
    if requested not in PRECISIONS:
        raise ConfigError(f"Unknown precision. Expected auto or one of {PRECISIONS}. "
                          f"Received: precision={requested!r}.",
                          "Set precision to auto, float32 or mixed_bfloat16.", params="precision")
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
