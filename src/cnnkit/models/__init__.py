"""Models: a preset (its own layers, or a pretrained backbone: :mod:`cnnkit.models.backbones`,
:mod:`cnnkit.models.transfer`, :mod:`cnnkit.models.weights`) built for raw ``uint8`` pixels, preprocessing inside.

``build_model`` makes the training model; ``inference_model`` the same network without its
training-only layers (what exports are made from); ``to_float32`` the float32 twin a
mixed-precision run saves.
"""

from __future__ import annotations

from cnnkit.models.build import PRECISIONS, build_model, resolve_precision, to_float32
from cnnkit.models.inference import inference_model, is_training_only
from cnnkit.models.optimizers import make_optimizer

__all__ = ["PRECISIONS", "build_model", "inference_model", "is_training_only", "make_optimizer",
           "resolve_precision", "to_float32"]
