"""The in-memory dataset every loader returns, validated once on creation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.datasets.labels import check_labels
from cnnkit.datasets.lazy import LazyImages
from cnnkit.datasets.splits import stratified_sample
from cnnkit.errors import ConfigError, DataError
from cnnkit.images import COLOR_MODES

# Pixels in memory, or rows of the pixel cache read on demand (a folder larger than memory).
Images = np.ndarray | LazyImages


@dataclass(eq=False)  # eq would compare arrays element-wise and fail
class Dataset:
    """Train and test images with integer labels, as loaded from one source.

    Attributes:
        name: short name, e.g. ``"mnist"`` or the ``.npz`` file's stem.
        x_train, x_test: ``uint8`` pixels 0-255, shape ``(N, H, W, C)``; ``C`` is 1 for grey.
        y_train, y_test: ``int64`` labels in ``[0, num_classes)``, shape ``(N,)``.
            Any integer dtype is accepted and converted (losslessly) to ``int64``.
        class_names: one name per class; label ``i`` means ``class_names[i]``.
        color_mode: ``"grayscale"`` (C=1) or ``"rgb"`` (C=3).
        source: where the data came from, for logs and reports.
    """

    name: str
    x_train: Images
    y_train: np.ndarray
    x_test: Images
    y_test: np.ndarray
    class_names: list[str]
    color_mode: str
    source: str = ""
    x_val: Images | None = None  # a fixed validation split (pre-split folders); None: carve from train
    y_val: np.ndarray | None = None
    report: str = ""  # what the loader skipped or merged, and why (image folders)
    resize: str = "stretch"  # how images of other sizes are brought to input_shape (stored in the model)
    profile: Any = None  # image folders: their DataProfile (native sizes, modes, near-duplicate groups)
    notes: Any = None  # image folders: their FolderNotes (files skipped, copies, near-duplicates, left out)

    def __post_init__(self) -> None:
        if self.color_mode not in COLOR_MODES:
            raise DataError(
                f"Expected color_mode 'grayscale' or 'rgb'. Received: color_mode={self.color_mode!r}."
            )
        self.class_names = [str(c) for c in self.class_names]
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise DataError(
                f"Expected a non-empty list of distinct class names. Received: class_names={self.class_names!r}."
            )
        if (self.x_val is None) != (self.y_val is None):
            raise DataError("Expected both x_val and y_val, or neither. Received only one of them.")
        for part in ("train", "test") if self.x_val is None else ("train", "val", "test"):
            x = _check_images(f"x_{part}", getattr(self, f"x_{part}"), COLOR_MODES[self.color_mode], self.color_mode)
            y = check_labels(getattr(self, f"y_{part}"), name=f"y_{part}", num_classes=len(self.class_names),
                             length=len(x))
            setattr(self, f"x_{part}", x)
            setattr(self, f"y_{part}", y)
        if self.x_train.shape[1:] != self.x_test.shape[1:] or (
                self.x_val is not None and self.x_val.shape[1:] != self.x_train.shape[1:]):
            raise DataError(
                "Expected train and test images of the same size. "
                f"Received: x_train.shape={self.x_train.shape}, x_test.shape={self.x_test.shape}.",
                hint="Resize one set to match the other before building the dataset.",
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one image, ``(H, W, C)``: what a model's input layer takes."""
        h, w, c = self.x_train.shape[1:]
        return (int(h), int(w), int(c))

    @property
    def num_classes(self) -> int:
        """How many classes the labels range over (``len(class_names)``)."""
        return len(self.class_names)

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> Dataset:
        """Return a smaller copy with a stratified, seeded sample of each split.

        ``None`` keeps a split whole. The same arguments always select the same
        images, in their original order.

        Example:
            >>> small = mnist.subset(train=3000, test=600, seed=0)  # doctest: +SKIP
        """
        if train is None and test is None:
            return self
        parts = {}
        for part, n in (("train", train), ("test", test)):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if n is not None:
                try:
                    idx = stratified_sample(y, n, seed)
                except ConfigError as exc:
                    raise ConfigError(f"Cannot take a {part} subset of {self.name}: {exc.message}", exc.hint) from exc
                x, y = x[idx], y[idx]
            parts[f"x_{part}"], parts[f"y_{part}"] = x, y
        limits = [f"{part}={n}" for part, n in (("train", train), ("test", test)) if n is not None]
        note = f"subset {' '.join(limits)} seed={seed}"
        return dataclasses.replace(self, **parts, source=f"{self.source} ({note})" if self.source else note)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, source={self.source!r})"
        )


def _check_images(field: str, x: object, channels: int, color_mode: str) -> Images:
    if not isinstance(x, (np.ndarray, LazyImages)):
        raise DataError(f"Expected {field} to be a NumPy array. Received: {type(x).__name__}.")
    if x.dtype != np.uint8:
        raise DataError(
            f"Expected {field} to hold uint8 pixels 0-255. Received: dtype {x.dtype}.",
            hint="Convert floats in [0, 1] with (x * 255).round().astype('uint8'); "
            "integers already in 0-255 with x.astype('uint8').",
        )
    if x.ndim != 4:
        raise DataError(
            f"Expected {field} with 4 dimensions (N, H, W, C). Received: shape={x.shape}.",
            hint="For greyscale images shaped (N, H, W), add a channel axis with x[..., None].",
        )
    if x.shape[-1] != channels:
        raise DataError(
            f"Expected {field} with {channels} channel(s) for color_mode={color_mode!r}. "
            f"Received: shape={x.shape}.",
            hint="Use color_mode='grayscale' for 1 channel or 'rgb' for 3 channels.",
        )
    return x


@dataclass
class Split:
    """Training and validation images (arrays, or LazyImages left on disk) carved from the training set."""

    x_train: Images
    y_train: np.ndarray
    x_val: Images
    y_val: np.ndarray
