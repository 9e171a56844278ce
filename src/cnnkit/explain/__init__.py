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
