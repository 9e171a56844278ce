"""Models: a preset (its own layers, or a pretrained backbone: :mod:`cnnkit.models.backbones`,
:mod:`cnnkit.models.transfer`, :mod:`cnnkit.models.weights`) built for raw ``uint8`` pixels, preprocessing inside.

``build_model`` makes the training model; ``inference_model`` the same network without its
training-only layers (what exports are made from); ``to_float32`` the float32 twin a
mixed-precision run saves.

The names load on first use (:mod:`cnnkit._lazy`): ``cnnkit.models.backbones`` and
``cnnkit.models.weights`` are plain data and files, and importing them loads no Keras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnkit._lazy import attach

if TYPE_CHECKING:
    from cnnkit.models.build import PRECISIONS as PRECISIONS
    from cnnkit.models.build import build_model as build_model
    from cnnkit.models.build import resolve_precision as resolve_precision
    from cnnkit.models.build import to_float32 as to_float32
    from cnnkit.models.inference import inference_model as inference_model
    from cnnkit.models.inference import is_training_only as is_training_only
    from cnnkit.models.optimizers import make_optimizer as make_optimizer

__getattr__, __dir__, __all__ = attach(__name__, {
    "PRECISIONS": "cnnkit.models.build", "build_model": "cnnkit.models.build",
    "resolve_precision": "cnnkit.models.build", "to_float32": "cnnkit.models.build",
    "inference_model": "cnnkit.models.inference", "is_training_only": "cnnkit.models.inference",
    "make_optimizer": "cnnkit.models.optimizers",
})
