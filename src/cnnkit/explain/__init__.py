"""See inside a network: layer arithmetic, a NumPy convolution walk-through, Grad-CAM and feature maps.

Modules:
    table     — ``explain_model``: a per-layer table of shapes, formulas, parameters, FLOPs,
                receptive field and activation memory, checked against Keras' own shapes.
    conv      — a small NumPy reference of cross-correlation, padding, stride and pooling that
                prints each step (article 002's worked example).
    gradcam   — Grad-CAM heatmaps for any class.
    features  — first-layer filters and feature maps of any layer.
    inspect   — ``cnnkit inspect RUN image.png``: the figures above for chosen images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnkit._lazy import attach

if TYPE_CHECKING:
    from cnnkit.explain.conv import conv_demo as conv_demo
    from cnnkit.explain.conv import walkthrough as walkthrough
    from cnnkit.explain.features import feature_maps as feature_maps
    from cnnkit.explain.features import first_layer_filters as first_layer_filters
    from cnnkit.explain.gradcam import grad_cam as grad_cam
    from cnnkit.explain.gradcam import overlay as overlay
    from cnnkit.explain.table import explain as explain
    from cnnkit.explain.table import explain_model as explain_model

__getattr__, __dir__, __all__ = attach(__name__, {
    "explain": "cnnkit.explain.table", "explain_model": "cnnkit.explain.table",
    "conv_demo": "cnnkit.explain.conv", "walkthrough": "cnnkit.explain.conv",
    "grad_cam": "cnnkit.explain.gradcam", "overlay": "cnnkit.explain.gradcam",
    "feature_maps": "cnnkit.explain.features", "first_layer_filters": "cnnkit.explain.features",
})
