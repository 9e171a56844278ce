"""Grad-CAM: which pixels made the model say "7"?

Grad-CAM (Selvaraju et al., 2017) weights each channel of a late feature map by
the mean gradient of a class score with respect to it, sums the channels, keeps
the positive part and upsamples the result to the input size.

cnnkit models are ``keras.Sequential`` chains (uint8 pixels → preprocessing →
body → ``Dense(softmax)`` head), so the model is split at the chosen layer and
run layer by layer in inference mode: augmentation and dropout are off, batch
norm uses its moving statistics. A pretrained backbone in the chain is opened at
its last feature map (:func:`chain`): the network up to that map is one link,
the rest of it (pooling) the next, so Grad-CAM looks where the backbone's own
features are. The class score is the head's pre-softmax
logit, as in the paper: the softmax output saturates near 1 for a confident
prediction, and its gradient then vanishes.

Only the gradient is backend-specific (:func:`_gradient`); everything else is
``keras.ops``, so Grad-CAM runs on TensorFlow, JAX and PyTorch alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit import _backend
from cnnkit._backend import keras
from cnnkit.errors import ConfigError, DataError
from cnnkit.models.transfer import PREPROCESSING

ops = keras.ops

# Classic Grad-CAM look: blue = no evidence, red = most evidence.
COLORMAP = "jet"


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    if not isinstance(model, keras.Sequential):
        raise ConfigError(
            f"Expected a keras.Sequential model (as cnnkit builds and saves). Received: model={type(model).__name__}.",
            "Load the model with cnnkit.artifact.load_model(run_dir).",
        )
    return list(model.layers)


def chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in order, a pretrained backbone opened at its last feature map (two links)."""
    links: list[keras.layers.Layer] = []
    for layer in _layers(model):
        if isinstance(layer, keras.Model):
            last = [inner for inner in layer.layers if len(inner.output.shape) == 4][-1]
            links.append(keras.Model(layer.inputs[0], last.output, name=last.name))
            links.append(keras.Model(last.output, layer.outputs[0], name=f"{layer.name}_pooling"))
        else:
            links.append(layer)
    return links


def spatial_layers(model: keras.Model) -> list[str]:
    """Names of the layers whose output is a feature map ``(N, H, W, C)``, in order.

    Preprocessing layers (rescaling, augmentation) are left out: their output is the image itself.
    """
    names = []
    for layer in chain(model):
        if _is_preprocessing(layer):
            continue
        if len(layer.output.shape) == 4:
            names.append(layer.name)
    return names


def _is_preprocessing(layer: keras.layers.Layer) -> bool:
    return (isinstance(layer, keras.layers.Rescaling) or type(layer).__name__.startswith("Random")
            or layer.name in PREPROCESSING)


def layer_index(model: keras.Model, name: str | None) -> int:
    """Index in ``model.layers`` of the named feature-map layer (default: the last one).

    Raises:
        ConfigError: the name is unknown or the layer has no (H, W, C) output; the message lists
            the layers that do.
    """
    layers = chain(model)
    names = [layer.name for layer in layers]
    spatial = spatial_layers(model)
    if name is None:
        if not spatial:
            raise ConfigError(
                f"Expected a model with a convolutional feature map. Received: layers={names}.",
                "Grad-CAM and feature maps need at least one Conv2D (or pooling) layer.",
            )
        name = spatial[-1]
    if name not in names:
        raise ConfigError(
            f"Unknown layer. Expected one of {spatial}. Received: layer={name!r}.",
            f"The model's layers are {names}.",
        )
    if name not in spatial:
        raise ConfigError(
            f"Expected a layer with a feature-map output (N, H, W, C). Received: layer={name!r}.",
            f"Choose one of {spatial}.",
        )
    return names.index(name)


def check_pixels(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Validate raw ``uint8`` pixels ``(N, H, W, C)`` against the model's input shape."""
    array = np.asarray(images)
    expected = tuple(model.input_shape[1:])
    if array.ndim != 4 or array.shape[1:] != expected or array.shape[0] == 0:
        raise DataError(
            f"Expected a non-empty batch of images shaped (N, {', '.join(map(str, expected))}). "
            f"Received: shape={array.shape}.",
            "Add the batch axis for a single image: images[None].",
        )
    if array.dtype != np.uint8:
        raise DataError(
            f"Expected raw uint8 pixels 0-255 (the model scales them itself). Received: dtype={array.dtype}.",
            "Pass the pixels as decoded by cnnkit.images.decode_image; do not divide by 255.",
        )
    return array


def run_layers(layers: Sequence[keras.layers.Layer], x: Any) -> Any:
    """Apply ``layers`` in order, in inference mode."""
    for layer in layers:
        x = layer(x, training=False)
    return x


def _logits(layers: Sequence[keras.layers.Layer], features: Any) -> Any:
    """Pre-softmax class scores from a feature map: the rest of the body, then the head's affine part."""
    *body, head = layers
    x = run_layers(body, features)
    if isinstance(head, keras.layers.Dense):
        # The head is Dense(softmax): apply its kernel and bias, skip the activation.
        x = ops.matmul(x, head.kernel)
        return x + head.bias if head.use_bias else x
    return head(x, training=False)


def grad_cam(
    model: keras.Model,
    images: np.ndarray,
    class_index: int | Sequence[int] | None = None,
    layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM heatmaps ``(N, H, W)`` float32 in [0, 1], one per image, at the input's size.

    Args:
        model: a cnnkit model (``keras.Sequential`` with a ``Dense`` softmax head).
        images: raw ``uint8`` pixels ``(N, H, W, C)``.
        class_index: the class to explain: one for all images, one per image, or ``None`` for
            each image's predicted class.
        layer: the feature-map layer; default the last one before the head (coarsest, most semantic).

    Example:
        >>> heat = grad_cam(model, x_test[:8])  # doctest: +SKIP
        >>> heat.shape, float(heat.max())  # doctest: +SKIP
        ((8, 28, 28), 1.0)
    """
    pixels = check_pixels(model, images)
    layers = chain(model)
    split = layer_index(model, layer) + 1
    # float32 up front: the preprocessing layers only scale, so this equals the model's own cast.
    features = run_layers(layers[:split], ops.convert_to_tensor(pixels.astype(np.float32)))
    logits = _logits(layers[split:], features)
    classes = _class_indices(class_index, ops.convert_to_numpy(logits), len(pixels))
    mask = ops.convert_to_tensor(np.eye(logits.shape[-1], dtype=np.float32)[classes])

    # Images do not interact in inference mode, so one gradient of the summed scores gives
    # every image's own gradient.
    grads = _backend.gradient(lambda f: ops.sum(_logits(layers[split:], f) * mask), features)
    weights = ops.mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel and image
    cam = ops.relu(ops.sum(weights * features, axis=-1, keepdims=True))
    (top, bottom), (left, right) = _cropped_margins(layers[:split])
    height, width = pixels.shape[1] - top - bottom, pixels.shape[2] - left - right
    cam = ops.image.resize(cam, (height, width), interpolation="bilinear")[..., 0]
    # A cropped border was never seen by the layer: no evidence there.
    cam = np.pad(ops.convert_to_numpy(cam).astype(np.float32), ((0, 0), (top, bottom), (left, right)))
    peak = cam.max(axis=(1, 2), keepdims=True)
    # An all-zero map (no positive evidence at this layer) stays zero rather than dividing by 0.
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0).clip(0.0, 1.0)


def _cropped_margins(layers: Sequence[keras.layers.Layer]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Input pixels cut from each side by the ``Cropping2D`` layers among ``layers``."""
    margins, jump = np.zeros((2, 2), dtype=int), np.ones(2, dtype=int)
    for layer in layers:
        if isinstance(layer, keras.layers.Cropping2D):
            margins += np.asarray(layer.cropping) * jump[:, None]
        stride = getattr(layer, "strides", None)
        if stride is not None and len(stride) == 2:  # convolutions and 2-D pooling
            jump *= np.asarray(stride)
    return (int(margins[0, 0]), int(margins[0, 1])), (int(margins[1, 0]), int(margins[1, 1]))


def _class_indices(class_index: int | Sequence[int] | None, logits: np.ndarray, n: int) -> np.ndarray:
    num_classes = logits.shape[-1]
    if class_index is None:
        return logits.argmax(axis=-1)
    indices = np.asarray(class_index)
    if indices.ndim == 0:
        indices = np.full(n, indices)
    if indices.shape != (n,) or indices.dtype.kind not in "iu" or indices.min() < 0 or indices.max() >= num_classes:
        raise ConfigError(
            f"Expected class_index to be an int in [0, {num_classes}) or one per image ({n}). "
            f"Received: class_index={class_index!r}."
        )
    return indices.astype(np.int64)


def overlay(images: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend coloured heatmaps over images: ``uint8`` RGB ``(N, H, W, 3)``.

    Grey images are repeated to three channels first; ``alpha`` is the heatmap's weight.

    Example:
        >>> overlay(x_test[:8], grad_cam(model, x_test[:8])).shape  # doctest: +SKIP
        (8, 28, 28, 3)
    """
    from matplotlib import colormaps

    pixels = np.asarray(images)
    heat = np.asarray(heatmaps, dtype=np.float32)
    if pixels.ndim == 3:
        pixels = pixels[..., None]  # grey images without their channel axis
    if pixels.ndim != 4 or pixels.shape[-1] not in (1, 3) or heat.shape != pixels.shape[:3]:
        raise DataError(
            "Expected images (N, H, W, 1 or 3) and heatmaps (N, H, W) of the same size. "
            f"Received: images shape={np.shape(images)}, heatmaps shape={heat.shape}."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"Expected alpha in [0, 1]. Received: alpha={alpha!r}.")
    rgb = np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels
    colours = colormaps[COLORMAP](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
