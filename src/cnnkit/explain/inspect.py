"""``cnnkit inspect RUN image.png``: Grad-CAM, first-layer filters and feature maps as PNG files."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnkit.artifact import load_model
from cnnkit.errors import ConfigError
from cnnkit.explain.features import feature_maps, plot_feature_maps, plot_filters, plot_gradcam
from cnnkit.explain.gradcam import chain, grad_cam, layer_index
from cnnkit.predictor import Predictor

# Output file names, one constant each (as in cnnkit.artifact).
GRADCAM = "gradcam.png"
FILTERS = "filters.png"
FEATURE_MAPS = "feature_maps_{layer}.png"  # one image; several add "_<position>" (1-based)


def inspect(
    run: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    layer: str | None = None,
    target: str | None = None,
) -> list[Path]:
    """Write Grad-CAM overlays, first-layer filters and feature maps for ``images`` into ``out``.

    Args:
        run: a run folder or ``.keras`` file.
        images: image files, decoded exactly as ``cnnkit predict`` decodes them.
        out: folder for the PNG files (created if missing).
        layer: the feature-map layer for Grad-CAM and the feature-map figures; default the last
            one before the head.
        target: explain this class (a class name) instead of each image's predicted class.

    Returns:
        The written files: ``gradcam.png``, ``filters.png``, then one ``feature_maps_<layer>*.png``
        per image.

    Raises:
        DataError: an image file is missing or cannot be decoded (the message names it).
        ConfigError: no images, unknown ``layer`` or unknown ``target`` class.

    Example:
        >>> inspect("runs/fast", ["seven.png"], "runs/fast/inspect")  # doctest: +SKIP
        [PosixPath('runs/fast/inspect/gradcam.png'), ...]
    """
    paths = [Path(p) for p in images]
    if not paths:
        raise ConfigError("Expected at least one image file. Received: images=[].",
                          "Pass the image files to inspect, e.g. cnnkit inspect RUN digit.png.")
    model, metadata = load_model(run)
    names = list(metadata.class_names)
    target_index = _class_index(names, target)
    layer_name = chain(model)[layer_index(model, layer)].name  # resolve the default, fail early on a bad name
    predictor = Predictor(model, metadata)
    pixels = predictor.load_files(paths)
    probs = predictor.predict_proba(pixels)
    heatmaps = grad_cam(model, pixels, class_index=target_index, layer=layer_name)

    out = Path(out)
    titles = []
    for row in probs:
        best = int(np.argmax(row))
        title = f"pred {names[best]} ({row[best]:.0%})"
        if target_index is not None:
            title = f"for {names[target_index]} ({row[target_index]:.0%}); {title}"
        titles.append(title)
    written = [
        plot_gradcam(pixels, heatmaps, titles, out / GRADCAM, image_titles=[_short(p.name) for p in paths],
                     suptitle=f"Grad-CAM at {layer_name}"),
        plot_filters(model, out / FILTERS),
    ]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", layer_name)
    for position, (path, image) in enumerate(zip(paths, pixels), start=1):
        name = FEATURE_MAPS.format(layer=safe if len(paths) == 1 else f"{safe}_{position}")
        written.append(plot_feature_maps(feature_maps(model, image, layer_name), out / name,
                                         title=f"{layer_name} on {_short(path.name)}"))
    return written


def _class_index(names: list[str], target: str | None) -> int | None:
    if target is None:
        return None
    if target not in names:
        raise ConfigError(f"Unknown target class. Expected one of {names}. Received: target={target!r}.",
                          "Pass a class name exactly as the model's metadata lists it.")
    return names.index(target)


def _short(name: str, limit: int = 24) -> str:
    """Keep titles inside their 2-inch panel."""
    return name if len(name) <= limit else name[: limit - 1] + "…"
