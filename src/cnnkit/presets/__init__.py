"""Recipes as data: the five articles' models, exactly, and our own; one registry of them.

Example:
    >>> get_preset("fast").batch_size
    256
"""

from __future__ import annotations

from cnnkit.errors import ConfigError
from cnnkit.presets.articles import ARTICLES
from cnnkit.presets.base import Layer, Preset, Reported
from cnnkit.presets.ours import OURS
from cnnkit.tta import check_spec

__all__ = ["PRESETS", "Layer", "Preset", "Reported", "get_preset", "register"]

PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    """Add a preset to the registry (names are unique)."""
    if preset.name in PRESETS:
        raise ConfigError(f"A preset named {preset.name!r} already exists.")
    check_spec(preset.tta, f"the tta of preset {preset.name!r}")
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    """Return the preset called ``name``; unknown names raise a ConfigError listing the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown preset. Expected one of: {', '.join(PRESETS)}. Received: preset={name!r}.",
            "Run `cnnkit summary --list` to see every preset with its description.",
        ) from None


for _preset in (*ARTICLES, *OURS):
    register(_preset)
