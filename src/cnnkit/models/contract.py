"""The contract every model cnnkit trains keeps, checked on a model the user built by hand.

cnnkit's data path hands a model raw ``uint8`` pixels, ``(N, H, W, C)``, at the data's size and colour
mode, and reads one probability per class from it. A model built with :func:`cnnkit.build_model` keeps
that by construction; a hand-built ``keras.Sequential`` is checked here before anything is written, so a
mismatch is one clear message rather than an error deep inside ``fit``.
"""

from __future__ import annotations

import logging
from typing import Any

from cnnkit.errors import ConfigError

log = logging.getLogger(__name__)

_SCALING = ("Rescaling", "Normalization")


def check_model(model: Any, dataset: Any) -> None:
    """Refuse ``model`` unless it takes ``dataset``'s images and answers a softmax over its classes.

    A model with no ``Rescaling`` or ``Normalization`` layer is trained anyway, with a warning: it sees
    pixels 0-255, as every caller of the saved model will send them.

    Raises:
        ConfigError: not a Keras model, an input of another size or colour mode, an output of another width,
            or an output that is not a softmax.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise ConfigError(f"Expected model as a Keras model. Received: {type(model).__name__}.",
                          "Pass a keras.Model (for example one from cnnkit.build_model), or leave model out "
                          "and name a recipe.", params="model")
    try:
        given_in, given_out = tuple(model.input_shape), tuple(model.output_shape)
    except (AttributeError, ValueError) as exc:  # a subclassed model that was never built
        raise ConfigError(f"Expected a model with a known input shape. Received: {type(model).__name__} ({exc}).",
                          "Start it with keras.Input(shape=(H, W, C)).", params="model") from None
    want_in = (None, *dataset.input_shape)
    if len(given_in) != 4 or any(g not in (None, w) for g, w in zip(given_in[1:], want_in[1:])):
        raise ConfigError(f"Expected a model whose input takes the data's images, (None, H, W, C) = {want_in}. "
                          f"Received: model.input_shape={given_in}.",
                          f"Build it with keras.Input(shape={tuple(dataset.input_shape)}).", params="model")
    if given_out[-1] != dataset.num_classes:
        raise ConfigError(f"Expected a model with one output per class ({dataset.num_classes}: "
                          f"{', '.join(dataset.class_names[:5])}{', ...' if dataset.num_classes > 5 else ''}). "
                          f"Received: model.output_shape={given_out}.",
                          f"End it with keras.layers.Dense({dataset.num_classes}, activation='softmax').",
                          params="model")
    last = model.layers[-1] if model.layers else None
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if last is not None and type(last).__name__ == "Softmax":
        activation = "softmax"
    if activation != "softmax":
        raise ConfigError("Expected a model that ends in a softmax (cnnkit reads probabilities from it). "
                          f"Received: last layer {type(last).__name__ if last else None} with activation "
                          f"{activation!r}.",
                          f"End it with keras.layers.Dense({dataset.num_classes}, activation='softmax').",
                          params="model")
    if not any(type(layer).__name__ in _SCALING for layer in _all_layers(model)):
        log.warning("The model has no Rescaling or Normalization layer: it will see pixels 0-255, as cnnkit "
                    "passes them everywhere. Put keras.layers.Rescaling(1 / 255) after its Input to scale "
                    "them inside the model.")


def _all_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if hasattr(layer, "layers"):
            layers.extend(_all_layers(layer))
    return layers
