"""Optimizers from a preset's spec, every argument explicit."""

from __future__ import annotations

from typing import Any

from cnnkit._backend import keras
from cnnkit.errors import ConfigError

_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "adadelta": keras.optimizers.Adadelta,
    "rmsprop": keras.optimizers.RMSprop,
}


def make_optimizer(spec: dict[str, Any], learning_rate: Any = None) -> keras.optimizers.Optimizer:
    """Build an optimizer from a preset spec, every argument explicit.

    ``learning_rate`` (a float or a schedule) overrides the spec's value.
    """
    spec = dict(spec)
    name = spec.pop("name")
    if name not in _OPTIMIZERS:
        raise ConfigError(f"Unknown optimizer. Expected one of {sorted(_OPTIMIZERS)}. Received: {name!r}.")
    if learning_rate is not None:
        spec["learning_rate"] = learning_rate
    return _OPTIMIZERS[name](**spec)
