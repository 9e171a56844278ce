"""Preprocessing layers that live inside the model.

Because scaling, normalisation and augmentation are layers, a saved model
takes raw ``uint8`` pixels, and training, evaluation, prediction and serving
cannot disagree about them (the articles' unscaled-input defect becomes
impossible). Augmentation layers are Keras' own ``Random*`` layers: active in
``fit``, identity at inference.

A spec is plain data, e.g. ``{"rescale": 1/255, "augment": {"rotation": 0.05}}``.
"""

from __future__ import annotations

from typing import Any

from cnnkit._backend import keras
from cnnkit.errors import ConfigError

AUGMENTATIONS = {
    # spec key → (Keras layer, how the spec value maps to its arguments)
    "flip": lambda v: keras.layers.RandomFlip(mode=v if isinstance(v, str) else "horizontal"),
    "rotation": lambda v: keras.layers.RandomRotation(factor=float(v), fill_mode="constant"),
    "zoom": lambda v: keras.layers.RandomZoom(height_factor=float(v), fill_mode="constant"),
    "translation": lambda v: keras.layers.RandomTranslation(float(v), float(v), fill_mode="constant"),
    "contrast": lambda v: keras.layers.RandomContrast(factor=float(v)),
    # Erase a random rectangle of each image with probability v (before rescaling: pixels are 0-255 here).
    "erasing": lambda v: keras.layers.RandomErasing(factor=float(v), value_range=(0, 255)),
}
_KEYS = {"rescale", "normalize", "augment"}


def build_preprocessing(spec: dict[str, Any]) -> list[keras.layers.Layer]:
    """Return the in-model preprocessing layers for ``spec``, in order.

    Keys: ``rescale`` (factor, e.g. ``1/255``), ``normalize`` (``[mean, std]``
    applied after rescaling), ``augment`` (mapping of flip/rotation/zoom/
    translation/contrast/erasing to their strength).
    """
    unknown = set(spec) - _KEYS
    if unknown:
        raise ConfigError(
            f"Unknown preprocessing keys {sorted(unknown)}. Expected some of {sorted(_KEYS)}. Received: {spec!r}."
        )
    layers: list[keras.layers.Layer] = []
    for kind, strength in (spec.get("augment") or {}).items():
        if kind not in AUGMENTATIONS:
            raise ConfigError(
                f"Unknown augmentation {kind!r}. Expected one of {sorted(AUGMENTATIONS)}.",
            )
        # Augment before rescaling so fills and flips act on raw pixels; these layers cast to float.
        layers.append(AUGMENTATIONS[kind](strength))
    if "rescale" in spec:
        layers.append(keras.layers.Rescaling(float(spec["rescale"]), name="rescale"))
    if "normalize" in spec:
        mean, std = (float(v) for v in spec["normalize"])
        layers.append(keras.layers.Rescaling(1.0 / std, offset=-mean / std, name="normalize"))
    return layers
