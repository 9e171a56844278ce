"""A pretrained backbone under a classification head, for raw ``uint8`` pixels like every cnnkit model.

The chain, one ``keras.Sequential`` of Keras' own layers (the saved model loads with safe mode on):

    pixels (uint8) -> augmentation (training only) -> float -> [grey -> 3 channels]
      -> [Caffe-style preprocessing: BGR order, ImageNet means subtracted] -> backbone -> dropout -> softmax

- Grey images become three equal channels inside the model, by a frozen 1x1 convolution whose
  kernel is ones (exact: each output channel is the grey value times one).
- ResNet50's ``preprocess_input`` reverses the channels and subtracts ImageNet's means. Here that is
  a frozen 1x1 convolution holding the channel permutation, then a ``Normalization`` layer with those
  means and unit variance: explicit layers, never a ``Lambda``.
- Every other family keeps its preprocessing inside its own network (``include_preprocessing``).

The backbone is built with random weights; :func:`load_backbone_weights` puts a weights file
(:mod:`cnnkit.models.weights`) into it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnkit._backend import keras
from cnnkit.errors import ConfigError
from cnnkit.models.backbones import Backbone, get_backbone

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils, mode "caffe"
# The layers cnnkit puts before a backbone: they change the pixels' form, not what they show.
PREPROCESSING = ("to_float", "grey_to_rgb", "to_bgr", "imagenet_mean")


def backbone_layers(backbone: Backbone | str, input_shape: tuple[int, ...]) -> list[keras.layers.Layer]:
    """The layers from (augmented) pixels to the backbone's pooled features, for ``input_shape``."""
    backbone = get_backbone(backbone)
    height, width, channels = input_shape
    if min(height, width) < backbone.min_size:
        raise ConfigError(f"The input is smaller than {backbone.name} takes: at least {backbone.min_size}x"
                          f"{backbone.min_size}. Received: input_shape={tuple(input_shape)}.",
                          f"Use an image_size of at least {backbone.min_size} (its weights were trained at "
                          f"{backbone.input_size}).", params="image_size")
    layers: list[keras.layers.Layer] = [keras.layers.Rescaling(1.0, name="to_float")]  # exact cast of uint8
    mix = None
    if channels == 1:
        mix = np.ones((1, 1, 1, 3), np.float32)  # grey -> three equal channels
    if backbone.preprocessing == "caffe":
        order = np.eye(3, dtype=np.float32)[::-1]  # RGB -> BGR
        mix = order.reshape(1, 1, 3, 3) if mix is None else mix[..., ::-1].copy()
    if mix is not None:
        layers.append(_fixed_1x1(mix, "grey_to_rgb" if channels == 1 and backbone.preprocessing != "caffe"
                                 else "to_bgr"))
    if backbone.preprocessing == "caffe":
        layers.append(keras.layers.Normalization(mean=list(CAFFE_MEAN_BGR), variance=[1.0, 1.0, 1.0],
                                                 name="imagenet_mean"))
    elif backbone.preprocessing != "inside":
        raise ConfigError(f"Unknown backbone preprocessing. Expected 'inside' or 'caffe'. "
                          f"Received: preprocessing={backbone.preprocessing!r}.")
    net = getattr(keras.applications, backbone.family)(
        include_top=False, weights=None, input_shape=(height, width, 3), pooling="avg", **backbone.options)
    layers.append(net)
    return layers


def _fixed_1x1(kernel: np.ndarray, name: str) -> keras.layers.Layer:
    """A frozen 1x1 convolution with ``kernel``: a channel map Keras can save and export."""
    layer = keras.layers.Conv2D(kernel.shape[-1], 1, use_bias=False, trainable=False, name=name,
                                kernel_initializer=keras.initializers.Constant(0.0))
    layer.build((None, None, None, kernel.shape[2]))
    layer.set_weights([kernel])
    return layer


def find_backbone(model: keras.Model) -> keras.Model:
    """The pretrained network inside a cnnkit model (its one nested model)."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ConfigError(f"Expected a model with one backbone inside. Received: model {model.name!r} with "
                          f"{len(nested)} nested models.")
    return nested[0]


def load_backbone_weights(model: keras.Model, backbone: Backbone, path: Path) -> None:
    """Put the weights file ``path`` into ``model``'s backbone; a file of another network is a clear error."""
    try:
        find_backbone(model).load_weights(str(path))
    except (ValueError, KeyError, OSError, TypeError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"The weights file does not fit {backbone.name} ({backbone.family}, without its "
                          f"classifier): {detail}. Received: weights={str(path)!r}.",
                          f"Pass the file Keras publishes for it, {backbone.weights_file}, or weights='imagenet' "
                          f"to fetch it.", params="weights") from None


def weights_digest(model: keras.Model) -> str:
    """A hash of the backbone's weights as loaded: what its cached features depend on."""
    import hashlib

    digest = hashlib.sha256()
    for value in find_backbone(model).get_weights():
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:32]
