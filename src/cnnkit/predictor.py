"""Predictor: one object that turns raw pixels or image files into class probabilities.

Shared by evaluation, ``cnnkit predict``, batch prediction (local and Ray) and the server. It
checks the input shape against the model's metadata, decodes files with the one shared
:func:`cnnkit.images.decode_image`, and calls the model through its one
:class:`~cnnkit.engines.Engine` (test-time augmentation included), in fixed-size batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from cnnkit._backend import keras
from cnnkit.artifact import ModelMetadata, load_model
from cnnkit.engines import Engine, build_engine
from cnnkit.errors import DataError
from cnnkit.images import ImageInfo, ImageSource, decode_with_info

# An image whose longer side is this many times larger or smaller than the training images' is far from
# them: a 360-pixel photo given to a 28-pixel digit model, say. Resizing within the factor is ordinary
# (a digit drawn on a 280-pixel canvas passes).
SIZE_FACTOR = 10


class OnDisk(Protocol):
    """Images left on disk (:class:`cnnkit.datasets.lazy.LazyImages`): a shape, and rows read on demand."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def __len__(self) -> int: ...

    def take(self, positions: np.ndarray) -> np.ndarray: ...


@dataclass
class Prediction:
    """The answer for one image: best label and the top-k (label, probability) pairs."""

    label: str
    probability: float
    top_k: list[tuple[str, float]]


class Predictor:
    """Wraps a model and its metadata.

    Example:
        >>> p = Predictor.from_artifact("runs/demo")  # doctest: +SKIP
        >>> p.predict_files(["seven.png"])[0].label  # doctest: +SKIP
        '7'
    """

    def __init__(self, model: keras.Model, metadata: ModelMetadata, batch_size: int = 256, tta: bool = True,
                 engine: Engine | None = None) -> None:
        self.model = model
        self.metadata = metadata
        self.batch_size = batch_size
        # The test-time augmentation the model's recipe asked for (cnnkit.tta); tta=False: one view.
        self.tta = dict(metadata.tta) if tta else {}
        self.input_shape = tuple(metadata.input_shape)
        self.class_names = list(metadata.class_names)
        # The one way this predictor calls the model; another engine may be given (cnnkit.engines).
        self.engine = engine or build_engine(model, tta=self.tta)

    @classmethod
    def from_artifact(cls, path: str | os.PathLike[str], batch_size: int = 256, tta: bool = True) -> Predictor:
        """Load a run folder or ``.keras`` file."""
        model, metadata = load_model(path)
        return cls(model, metadata, batch_size=batch_size, tta=tta)

    def check_pixels(self, images: np.ndarray) -> np.ndarray:
        """Validate a batch (or one image) of raw pixels; return a ``(N, H, W, C)`` uint8 array."""
        array = np.asarray(images)
        if self.input_shape[-1] == 1 and array.shape[-2:] == self.input_shape[:2]:
            array = array[..., None]  # grey images given without their channel axis
        if array.ndim == len(self.input_shape):
            array = array[None]  # one image
        if array.shape[1:] != self.input_shape:
            shape = ", ".join(map(str, self.input_shape))
            raise DataError(  # the shape as the caller gave it, not as it became here
                f"Expected uint8 images of shape (N, {shape}), or one image ({shape}). "
                f"Received: shape={np.shape(images)}.",
                "Decode and resize files with cnnkit.images.decode_image (or pass file paths), "
                f"colour mode {self.metadata.color_mode!r}.",
            )
        if array.dtype != np.uint8:
            raise DataError(
                f"Expected raw uint8 pixels 0-255 (the model scales them itself). Received: dtype={array.dtype}.",
                "Pass the pixels as decoded, e.g. array.astype('uint8'); do not divide by 255.",
            )
        return array

    def predict_proba(self, images: np.ndarray | OnDisk) -> np.ndarray:
        """Class probabilities ``(N, num_classes)`` for raw ``uint8`` pixels (in memory or on disk)."""
        if not isinstance(images, np.ndarray):  # read one batch at a time
            self.check_pixels(np.empty((0, *images.shape[1:]), dtype=images.dtype))  # shape check, no read
            batches = (images.take(np.arange(s, min(s + self.batch_size, len(images))))
                       for s in range(0, len(images), self.batch_size))
        else:
            array = self.check_pixels(images)
            batches = (array[s:s + self.batch_size] for s in range(0, len(array), self.batch_size))
        out = [self.engine(batch) for batch in batches]
        if not out:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    def decode(self, source: ImageSource, max_pixels: int | None = None) -> np.ndarray:
        """One image (a path or its bytes) decoded to the model's input: size, colour mode and resize policy."""
        return self.decode_with_warning(source, max_pixels)[0]

    def decode_with_warning(self, source: ImageSource, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
        """:meth:`decode`, plus how the image differs from what the model was trained on ("" if it does not)."""
        height, width, _ = self.input_shape
        pixels, info = decode_with_info(source, size=(height, width), color_mode=self.metadata.color_mode,
                                        resize=self.metadata.resize, max_pixels=max_pixels)
        return pixels, self.mismatch(info)

    def mismatch(self, info: ImageInfo) -> str:
        """Why an image is far from the model's training images: colour for a greyscale model, or a native
        size more than :data:`SIZE_FACTOR` times larger or smaller than theirs. ``""`` when it is not.
        """
        if info.colour and self.metadata.color_mode == "grayscale":
            return "a colour image"
        native = self.metadata.extra.get("native_size")  # recorded where the training images had one size
        if native:
            side, trained = max(info.width, info.height), max(native)
            if side > SIZE_FACTOR * trained or side * SIZE_FACTOR < trained:
                return f"{info.width}x{info.height} pixels"
        return ""

    def describe_training(self) -> str:
        """The training images in a few words, for warnings: "greyscale 28x28 images"."""
        native = self.metadata.extra.get("native_size")
        size = "x".join(map(str, native)) + " " if native else ""
        mode = "greyscale" if self.metadata.color_mode == "grayscale" else "colour"
        return f"{mode} {size}images"

    def load_files(self, paths: Sequence[str | os.PathLike[str]]) -> np.ndarray:
        """Decode image files into the model's input shape with the shared decoder."""
        return np.stack([self.decode(p) for p in paths]) if paths else np.zeros((0, *self.input_shape), dtype=np.uint8)

    def predict(self, images: np.ndarray, top_k: int = 3) -> list[Prediction]:
        """Labelled predictions for raw ``uint8`` pixels."""
        return self.label(self.predict_proba(images), top_k)

    def label(self, probs: np.ndarray, top_k: int = 3) -> list[Prediction]:
        """Turn rows of class probabilities into labelled predictions (best first)."""
        return [self._to_prediction(row, top_k) for row in probs]

    def predict_files(self, paths: Sequence[str | os.PathLike[str]], top_k: int = 3) -> list[Prediction]:
        """Labelled predictions for image files (any size; resized as the model's metadata says)."""
        return self.predict(self.load_files([Path(p) for p in paths]), top_k=top_k)

    def _to_prediction(self, probs: np.ndarray, top_k: int) -> Prediction:
        order = np.argsort(-probs, kind="stable")[: max(1, top_k)]
        pairs = [(self.class_names[i], float(probs[i])) for i in order]
        return Prediction(label=pairs[0][0], probability=pairs[0][1], top_k=pairs)
