"""The network as it runs at inference, as a model of its own: what graph exports are made from."""

from __future__ import annotations

import inspect
from typing import Any

from cnnkit._backend import BaseImagePreprocessingLayer, Functional, keras
from cnnkit.errors import ConfigError

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
