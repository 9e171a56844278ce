"""Recipes as data: the five articles' models, exactly, and our own; one registry of them.

A recipe is a :class:`Preset` (KerasHub's word for a named, pinned configuration). The registry is
written here, at import, and never after: a recipe made at run time (a tuned one, one read back from
a run folder) travels as the object itself, not as a name to look up.

Example:
    >>> as_preset("fast").batch_size
    256
    >>> as_preset("fsat")
    Traceback (most recent call last):
    ...
    cnnkit.errors.ConfigError: Unknown recipe. Expected one of: ... Received: recipe='fsat'. Did you mean 'fast'? ...
"""

from __future__ import annotations

import difflib

from cnnkit.errors import ConfigError
from cnnkit.presets.articles import ARTICLES
from cnnkit.presets.base import Layer, Preset, Reported
from cnnkit.presets.ours import OURS
from cnnkit.tta import check_spec

__all__ = ["PRESETS", "Layer", "Preset", "Reported", "as_preset", "get_preset"]

PRESETS: dict[str, Preset] = {}


def get_preset(name: str) -> Preset:
    """The built-in recipe called ``name``; an unknown name raises a ConfigError with the nearest ones."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
        raise ConfigError(
            f"Unknown recipe. Expected one of: {', '.join(PRESETS)}. Received: recipe={name!r}."
            + (f" Did you mean {close[0]!r}?" if close else ""),
            "See every recipe with its description in cnnkit.PRESETS.",
            params="recipe", cli_hint="Run `cnnkit summary --list` to see every recipe with its description.",
        ) from None


def as_preset(recipe: str | Preset) -> Preset:
    """``recipe`` as data: a :class:`Preset` is returned as it is, a name is looked up (:func:`get_preset`)."""
    return recipe if isinstance(recipe, Preset) else get_preset(recipe)


def _register(preset: Preset) -> None:
    if preset.name in PRESETS:
        raise ConfigError(f"A recipe named {preset.name!r} already exists.")
    check_spec(preset.tta, f"the tta of recipe {preset.name!r}")
    PRESETS[preset.name] = preset


for _preset in (*ARTICLES, *OURS):
    _register(_preset)
