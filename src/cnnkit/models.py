"""Build a Keras model from a preset: raw uint8 pixels in, class probabilities out."""

from __future__ import annotations

import inspect
from typing import Any

from cnnkit._backend import BaseImagePreprocessingLayer, Functional, keras
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


# The identity at inference by Keras' contract (SpatialDropout1D/2D/3D are Dropouts).
_IDENTITY_AT_INFERENCE = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                          keras.layers.AlphaDropout, keras.layers.ActivityRegularization)


def is_training_only(layer: keras.layers.Layer, inputs: keras.KerasTensor) -> bool:
    """True for a layer that, called with ``training=False``, passes ``inputs`` through unchanged.

    That is Dropout and its kin, and every Keras image *augmentation*: an image-preprocessing
    layer that draws random numbers (it holds a ``SeedGenerator``: RandomFlip ... RandomZoom,
    RandAugment, MixUp, Solarization ...) and keeps the image's shape. Deterministic image layers
    (Resizing, CenterCrop, AutoContrast) change pixels at inference too, and RandomCrop changes
    the shape the layers after it were built for: both stay.
    """
    if isinstance(layer, _IDENTITY_AT_INFERENCE):
        return True
    if not isinstance(layer, BaseImagePreprocessingLayer):
        return False
    draws_random = any(isinstance(value, keras.random.SeedGenerator) for value in vars(layer).values())
    return draws_random and tuple(layer.compute_output_spec(inputs).shape) == tuple(inputs.shape)


def inference_model(model: keras.Model) -> keras.Model:
    """The network as it runs at inference, as a model of its own: what the graph exports are made from.

    Training-only layers (:func:`is_training_only`: augmentation, dropout) are left out, and every
    other layer is a copy with the same weights, called with ``training=False``, so batch norm uses
    its moving statistics however an exporter calls the model. (Keras' image layers default to
    ``training=True`` and a call that leaves ``training`` unset, as ``model.export`` does, ran the
    augmentation, dropout and batch statistics.) Where a left-out layer changed the dtype (Keras'
    image layers turn ``uint8`` into float), an exact cast, ``Rescaling(1.0)``, takes its place.
    The input is the model's own (raw ``uint8`` ``pixels`` for cnnkit's models). The copy leaves
    ``model`` untouched: sharing its layers would give them a second graph node, which breaks
    ``layer.output`` (Grad-CAM, the layer table) on the original.

    Sequential and functional models are handled (a nested model is copied whole and run with
    ``training=False``, which computes the same); a subclassed model has no graph to rebuild.

    Returns a functional model whose output equals ``model(x, training=False)``.

    Example:
        >>> [layer.name for layer in inference_model(build_model("photo")).layers][:3]  # doctest: +SKIP
        ['pixels', 'random_flip_cast', 'rescale']
    """
    if isinstance(model, keras.Sequential):
        try:
            inputs, outputs = model.inputs, model.outputs
        except (AttributeError, ValueError):
            inputs = outputs = None
        if not inputs:
            raise ConfigError(f"Expected a Sequential model that starts with keras.Input(...). Received: model "
                              f"{model.name!r} without an input.",
                              "Start it with keras.Input(shape, dtype=...), as build_model does.")
        # Its functional view (same layers, no new nodes), taking one tensor as the Sequential does.
        graph = keras.Model(inputs[0], outputs[0], name=model.name)
    elif isinstance(model, Functional):
        graph = model
    else:
        raise ConfigError(
            f"Expected a Sequential or functional Keras model. Received: {type(model).__name__} {model.name!r}, "
            "a subclassed model, which has no layer graph to rebuild for inference.",
            "Build the model from layers (keras.Sequential or keras.Model(inputs, outputs)).")
    copies: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []  # (copy, original), kept alive

    def copy(layer: keras.layers.Layer) -> keras.layers.Layer:
        copies.append((layer.__class__.from_config(layer.get_config()), layer))
        return copies[-1][0]

    def call(layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        inputs = args[0]
        if isinstance(inputs, keras.KerasTensor) and is_training_only(layer, inputs):
            dtype = layer.compute_output_spec(inputs).dtype
            if dtype == inputs.dtype:
                return inputs
            return keras.layers.Rescaling(1.0, dtype=dtype, name=f"{layer.name}_cast")(inputs)
        if "training" in inspect.signature(layer.call).parameters:
            kwargs["training"] = False
        return layer(*args, **kwargs)

    twin = keras.models.clone_model(graph, clone_function=copy, call_function=call)
    used = {id(layer) for layer in twin.layers}
    for layer, original in copies:
        if id(layer) in used:
            layer.set_weights(original.get_weights())
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
