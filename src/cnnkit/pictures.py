"""The tutorials' pictures as objects a notebook shows: samples, curves, confusion matrix, predictions, Grad-CAM.

Every function returns a :class:`Picture`: PNG bytes that Jupyter displays by itself (``_repr_png_``) and
that :meth:`Picture.save` writes to a file; in a terminal its repr says what it is. The drawing is
:mod:`cnnkit.plots`' own, so a notebook shows the figures the run folder holds.

Example:
    >>> cnnkit.show_samples("mnist")  # doctest: +SKIP
    >>> cnnkit.plot_predictions(run, data).save("predictions.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.fileio import write_bytes


@dataclass(repr=False)
class Picture:
    """A PNG image: shown inline by Jupyter, written by :meth:`save`."""

    png: bytes
    title: str

    @property
    def size(self) -> tuple[int, int]:
        """Width and height in pixels (from the PNG header)."""
        width, height = struct.unpack(">II", self.png[16:24])
        return int(width), int(height)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the PNG to ``path`` (atomically) and return the path."""
        write_bytes(Path(path), self.png)
        return Path(path)

    def _repr_png_(self) -> bytes:
        return self.png

    def __repr__(self) -> str:
        width, height = self.size
        return f"<Picture: {self.title}, {width}x{height} PNG; .save(path) writes it>"


def drawn(draw: Callable[[Path], Any], title: str) -> Picture:
    """The :class:`Picture` that ``draw(path)`` writes (a :mod:`cnnkit.plots` function given a path)."""
    with tempfile.TemporaryDirectory(prefix="cnnkit-picture-") as folder:
        path = Path(folder) / "picture.png"
        draw(path)
        return Picture(path.read_bytes(), title)


def show_samples(data: Any = "mnist", count: int = 9, *, split: str = "train", **folder_options: Any) -> Picture:
    """A grid of the first ``count`` images of ``data`` with their labels ("Digit: 5"), as article 000 shows.

    ``data``: a name or path (loaded as ``cnnkit show`` loads it; ``folder_options`` such as ``image_size``
    apply to folders), a :class:`~cnnkit.datasets.Dataset`, or arrays ``(x, y)``.
    """
    from cnnkit import datasets
    from cnnkit.datasets.given import as_dataset, is_named
    from cnnkit.dataview import draw_samples

    dataset = datasets.load(data, **folder_options) if is_named(data) else as_dataset(data)
    return drawn(lambda path: draw_samples(dataset, path, count=count, split=split),
                 f"{min(count, len(dataset.y_train if split == 'train' else dataset.y_test))} {split} samples "
                 f"of {dataset.name}")


def plot_history(history: Any) -> Picture:
    """Accuracy and loss per epoch, training against validation, side by side (the articles' curves).

    ``history``: a :class:`~cnnkit.training.result.Run`, a run folder, a Keras ``History`` or its
    ``.history`` dict.
    """
    from cnnkit import artifact
    from cnnkit.plots import plot_history as draw

    if hasattr(history, "run_dir"):
        history = history.run_dir
    if isinstance(history, (str, os.PathLike)):
        history = artifact.read_json(Path(history) / artifact.HISTORY_JSON)
    values: Mapping[str, Sequence[float]] = getattr(history, "history", history)
    epochs = len(values.get("loss", []))
    return drawn(lambda path: draw(values, path), f"training curves, {epochs} epoch{'' if epochs == 1 else 's'}")


def plot_confusion_matrix(evaluation: Any, normalize: bool = False) -> Picture:
    """The confusion matrix of an :func:`cnnkit.evaluate` result (rows: true class, columns: predicted)."""
    from cnnkit.plots import plot_confusion_matrix as draw

    names = evaluation.class_names or [row["class"] for row in evaluation.per_class]
    return drawn(lambda path: draw(evaluation.confusion, names, path, normalize=normalize),
                 f"confusion matrix, {len(names)} classes")


def plot_predictions(target: Any, data: Any = None, count: int = 20) -> Picture:
    """Test images titled "Prediction: 7 – Actual: 7", mistakes in red and at least one shown when there is one.

    ``target`` and ``data`` as for :func:`cnnkit.evaluate` (``data=None``: the run's own test set).
    """
    from cnnkit.datasets.lazy import take_rows
    from cnnkit.evaluation import pick_prediction_examples, prediction_titles
    from cnnkit.plots import plot_image_grid
    from cnnkit.training.targets import predictor_for, run_dir_of, test_set

    run_dir = run_dir_of(target)
    test = test_set(data, run_dir)
    predictor = predictor_for(target, run_dir, test)
    predicted = predictor.predict_proba(test.x_test).argmax(axis=1)
    picks = pick_prediction_examples(test.y_test, predicted, n=count)
    titles, colors = prediction_titles(test.y_test, predicted, predictor.class_names, picks)
    images = take_rows(test.x_test, picks)
    wrong = int((predicted != test.y_test).sum())
    return drawn(lambda path: plot_image_grid(images, titles, path, title_colors=colors),
                 f"{len(picks)} predictions ({wrong} of {len(predicted)} test images wrong)")


def plot_gradcam(target: Any, images: Any, class_index: int | Sequence[int] | None = None,
                 layer: str | None = None) -> Picture:
    """Each image beside its Grad-CAM overlay: where the last feature maps drive the predicted (or given) class.

    ``target``: a run, run folder, predictor or Keras model; ``images``: image files (decoded as for
    prediction), or raw uint8 pixels, one image ``(H, W, C)`` or a batch ``(N, H, W, C)`` (grey images may
    leave out their channel axis).
    """
    from cnnkit.explain.features import plot_gradcam as draw
    from cnnkit.explain.gradcam import grad_cam
    from cnnkit.predictor import Predictor
    from cnnkit.training.targets import run_dir_of

    run_dir = run_dir_of(target)  # a Run or a run folder
    if isinstance(target, Predictor) or run_dir is not None or isinstance(target, (str, os.PathLike)):
        predictor = target if isinstance(target, Predictor) else Predictor.from_artifact(run_dir or target)
        files = isinstance(images, (list, tuple)) and all(isinstance(i, (str, os.PathLike)) for i in images)
        pixels = predictor.load_files(images) if files else predictor.check_pixels(images)
        model, names = predictor.model, predictor.class_names
    else:  # a Keras model in hand: its own input shape
        model, pixels = target, np.asarray(images)
        pixels = pixels[None] if pixels.ndim == len(model.input_shape) - 1 else pixels
        names = [str(i) for i in range(int(model.output_shape[-1]))]
    heatmaps = grad_cam(model, pixels, class_index=class_index, layer=layer)
    probs = np.asarray(model.predict(pixels, verbose=0))
    shown = (np.full(len(pixels), class_index) if isinstance(class_index, int)
             else np.asarray(class_index) if class_index is not None else probs.argmax(axis=1))
    titles = [f"{names[c]} {probs[i, c]:.0%}" for i, c in enumerate(shown)]
    return drawn(lambda path: draw(pixels, heatmaps, titles, path), f"Grad-CAM of {len(pixels)} images")
