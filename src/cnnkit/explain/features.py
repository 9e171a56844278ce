"""What the layers see: first-layer filters, feature maps of any layer, and their figures.

The figures reuse :func:`cnnkit.plots.plot_image_grid` (Agg canvas, no pyplot,
atomic writes): filters, feature maps and Grad-CAM overlays are turned into
``uint8`` images here and drawn by the one grid writer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnkit._backend import keras
from cnnkit.errors import ConfigError, DataError
from cnnkit.explain.gradcam import chain, check_pixels, layer_index, overlay, run_layers
from cnnkit.models.backbones import leaves
from cnnkit.models.transfer import PREPROCESSING
from cnnkit.plots import plot_image_grid

# Feature maps are coloured rather than grey so that small activations stay visible.
FEATURE_COLORMAP = "viridis"


def first_layer_filters(model: keras.Model) -> np.ndarray:
    """Kernels of the first ``Conv2D``: ``(filters, kh, kw, in_channels)`` float32 in [0, 1].

    One scale for all filters, centred on zero (0.5 = weight 0): per-filter stretching would make
    a nearly dead filter look as strong as the others and hide the sign of the weights.

    Example:
        >>> first_layer_filters(model).shape  # doctest: +SKIP
        (32, 5, 5, 1)
    """
    for layer in leaves(model):  # a backbone's own first convolution, past cnnkit's channel maps
        if isinstance(layer, keras.layers.Conv2D) and layer.name not in PREPROCESSING:
            kernel = keras.ops.convert_to_numpy(layer.kernel).astype(np.float32)
            break
    else:
        raise ConfigError(
            f"Expected a model with a Conv2D layer. Received: layers={[layer.name for layer in model.layers]}.",
            "First-layer filters are shown for convolutional models only.",
        )
    scale = float(np.abs(kernel).max()) or 1.0
    return np.transpose(0.5 + kernel / (2.0 * scale), (3, 0, 1, 2)).clip(0.0, 1.0)


def feature_maps(model: keras.Model, image: np.ndarray, layer: str | None = None) -> np.ndarray:
    """Activations ``(H', W', C)`` of one image at the named layer (default: the last feature map).

    ``image`` is raw ``uint8`` pixels ``(H, W, C)`` (or a batch of one).

    Raises:
        ConfigError: unknown layer, or one without a feature-map output; the message lists the
            layers that have one.

    Example:
        >>> feature_maps(model, x_test[0], "conv2d").shape  # doctest: +SKIP
        (28, 28, 32)
    """
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[None]
    pixels = check_pixels(model, array)
    if len(pixels) != 1:
        raise DataError(f"Expected one image. Received: shape={array.shape}.", "Pass images[i], not a batch.")
    stop = layer_index(model, layer) + 1
    maps = run_layers(chain(model)[:stop], keras.ops.convert_to_tensor(pixels.astype(np.float32)))
    return keras.ops.convert_to_numpy(maps)[0].astype(np.float32)


def plot_filters(model: keras.Model, path: str | os.PathLike[str], *, ncols: int = 8) -> Path:
    """Draw the first ``Conv2D`` layer's kernels as a grid of small images (grey = 0 weight)."""
    filters = first_layer_filters(model)
    # RGB kernels as colour images; grey ones (or any other channel count) by their first channel.
    images = filters if filters.shape[-1] == 3 else filters[..., 0]
    kh, kw = filters.shape[1:3]
    return plot_image_grid(
        _to_uint8(images), [f"#{i}" for i in range(len(filters))], path, ncols=ncols,
        suptitle=f"First-layer filters ({len(filters)} of {kh}x{kw}; light = positive, dark = negative)",
    )


def plot_feature_maps(
    maps: np.ndarray,
    path: str | os.PathLike[str],
    max_maps: int = 32,
    *,
    title: str | None = None,
    ncols: int = 8,
) -> Path:
    """Draw the first ``max_maps`` channels of ``maps`` ``(H', W', C)``, each on its own scale."""
    from matplotlib import colormaps

    array = np.asarray(maps, dtype=np.float32)
    if array.ndim != 3 or 0 in array.shape:
        raise DataError(
            f"Expected feature maps shaped (H, W, C). Received: shape={array.shape}.",
            "Pass feature_maps(model, image, layer) for one image.",
        )
    if isinstance(max_maps, bool) or not isinstance(max_maps, int) or max_maps < 1:
        raise ConfigError(f"Expected max_maps to be a positive integer. Received: max_maps={max_maps!r}.")
    channels = np.moveaxis(array[..., :max_maps], -1, 0)
    # Each map on its own scale: their ranges differ by orders of magnitude after ReLU.
    low = channels.min(axis=(1, 2), keepdims=True)
    span = channels.max(axis=(1, 2), keepdims=True) - low
    scaled = np.divide(channels - low, span, out=np.zeros_like(channels), where=span > 0)
    rgb = colormaps[FEATURE_COLORMAP](scaled)[..., :3]
    shown = f"{len(channels)} of {array.shape[-1]} channels"
    return plot_image_grid(_to_uint8(rgb), [f"#{i}" for i in range(len(channels))], path, ncols=ncols,
                           suptitle=f"{title} ({shown})" if title else shown)


def plot_gradcam(
    images: np.ndarray,
    heatmaps: np.ndarray,
    titles: Sequence[str],
    path: str | os.PathLike[str],
    *,
    alpha: float = 0.4,
    image_titles: Sequence[str] | None = None,
    suptitle: str = "Grad-CAM",
) -> Path:
    """Draw each image beside its Grad-CAM overlay, one image per row.

    ``titles`` label the overlays (e.g. ``"7 (99%)"``), ``image_titles`` the inputs (e.g. file names).
    """
    blended = overlay(images, heatmaps, alpha=alpha)
    n = len(blended)
    if len(titles) != n:
        raise DataError(f"Expected one title per image ({n}). Received: {len(titles)} titles.")
    names = list(image_titles) if image_titles is not None else ["input"] * n
    if len(names) != n:
        raise DataError(f"Expected one image title per image ({n}). Received: {len(names)} image titles.")
    pixels = np.asarray(images)
    pixels = pixels[..., None] if pixels.ndim == 3 else pixels
    rgb = np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels
    # Interleave input and overlay so the grid's two columns pair them up.
    cells = np.stack([rgb, blended], axis=1).reshape(2 * n, *blended.shape[1:])
    labels = [label for pair in zip(names, titles) for label in pair]
    return plot_image_grid(cells, [str(label) for label in labels], path, ncols=2, suptitle=suptitle)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
