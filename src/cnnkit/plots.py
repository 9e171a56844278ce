"""The tutorials' figures as PNG files: training curves, confusion matrix, image grid, learning-rate range test.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never
through ``pyplot``: nothing is registered in pyplot's global figure list (so
thousands of calls leak nothing) and a user's interactive backend and open
figures are left alone. Every file goes through :func:`cnnkit.fileio.atomic_path`.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from cnnkit.errors import ConfigError, DataError
from cnnkit.fileio import atomic_path

if TYPE_CHECKING:
    from cnnkit.diagnostics import Calibration

DPI = 100
# Beyond this many classes the cell numbers would be unreadably small; the
# colours still carry the information.
MAX_ANNOTATED_CLASSES = 40
# Keeps a 1000-class matrix at a few thousand pixels instead of tens of thousands.
MAX_FIGURE_INCHES = 30.0

# matplotlib's "Glyph 26085 (\N{CJK UNIFIED IDEOGRAPH-65E5}) missing from font(s) DejaVu Sans."
_MISSING_GLYPH = re.compile(r"Glyph (\d+) .*missing from font")

# (panel title, y label, train key, validation key), as in the Keras tutorials.
_HISTORY_PANELS = (
    ("Model accuracy", "accuracy", "accuracy", "val_accuracy"),
    ("Model loss", "loss", "loss", "val_loss"),
)


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Lay out ``fig``, write it as PNG atomically, and release its memory.

    Characters the font lacks (class names in a script DejaVu Sans does not cover) draw as boxes;
    matplotlib's warning per glyph and per drawing becomes one warning that names them and the fix.
    """
    FigureCanvasAgg(fig)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fig.tight_layout()
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=DPI, format="png")
        finally:
            fig.clear()
    missing = []
    for warning in caught:
        glyph = _MISSING_GLYPH.search(str(warning.message))
        if glyph is None:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        elif chr(int(glyph.group(1))) not in missing:
            missing.append(chr(int(glyph.group(1))))
    if missing:
        warnings.warn(f"The plot font has no glyph for {' '.join(missing)}: they show as boxes in {path}. "
                      "Install a font that covers them (Debian: fonts-noto-cjk for Chinese, Japanese and Korean) "
                      "and add it to matplotlib's font.family.", UserWarning, stacklevel=2)
    return Path(path)


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike[str]) -> Path:
    """Plot train vs validation accuracy and loss per epoch, side by side.

    Keys used: ``accuracy``, ``val_accuracy``, ``loss``, ``val_loss``; a missing
    or empty one is skipped (a panel with neither of its keys is left out) and
    any other key (``learning_rate`` …) is ignored.

    Example:
        >>> plot_history(model.fit(...).history, "run/history.png")  # doctest: +SKIP
    """
    if not isinstance(history, Mapping):
        raise DataError(
            f"history must be a dict of metric name -> list of per-epoch values. "
            f"Received: history of type {type(history).__name__}.",
            hint="Pass the History object's .history attribute (model.fit(...).history).",
        )
    panels = []
    for title, ylabel, train_key, val_key in _HISTORY_PANELS:
        curves = []
        for key, label in ((train_key, "train"), (val_key, "validation")):
            values = history.get(key)
            if values is None or len(values) == 0:
                continue
            curve = np.asarray(values, dtype=float)
            if curve.ndim != 1:
                raise DataError(
                    f"history[{key!r}] must be a flat list of one number per epoch. "
                    f"Received: shape {curve.shape}."
                )
            curves.append((curve, label))
        if curves:
            panels.append((title, ylabel, curves))
    if not panels:
        raise DataError(
            "history has none of the keys 'accuracy', 'val_accuracy', 'loss', 'val_loss' "
            f"with values. Received: keys {sorted(history)}.",
            hint="Compile the model with metrics=['accuracy'] and pass model.fit(...).history.",
        )

    fig = Figure(figsize=(6 * len(panels), 4.5))
    for i, (title, ylabel, curves) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for curve, label in curves:
            epochs = np.arange(1, len(curve) + 1)
            ax.plot(epochs, curve, marker="o" if len(curve) <= 30 else None, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
    return save_figure(fig, path)


def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    normalize: bool = False,
) -> Path:
    """Draw ``cm`` (rows = true class, columns = predicted) as an annotated heatmap.

    With ``normalize=True`` each row is divided by its total, so a cell reads
    "fraction of this true class predicted as that class" (an empty row stays 0).

    Example:
        >>> plot_confusion_matrix(evaluation.confusion, names, "run/cm.png")  # doctest: +SKIP
    """
    matrix = np.asarray(cm)
    names = [str(name) for name in class_names]
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise DataError(
            f"cm must be a non-empty square (K, K) matrix. Received: shape {matrix.shape}."
        )
    if matrix.shape[0] != len(names):
        raise DataError(
            f"cm has {matrix.shape[0]} classes but class_names has {len(names)}. "
            f"Received: cm shape {matrix.shape}, class_names {names[:12]}.",
            hint="Pass one name per row of the confusion matrix, in label order.",
        )
    if not np.issubdtype(matrix.dtype, np.number) or not np.all(np.isfinite(matrix)):
        raise DataError(f"cm must hold finite numbers. Received: dtype {matrix.dtype}.")
    if np.any(matrix < 0):
        raise DataError(f"cm must hold counts >= 0. Received: minimum {matrix.min()}.")

    values = matrix.astype(float)
    if normalize:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
        fmt = "{:.2f}"
    else:
        fmt = "{:.0f}" if np.all(values == np.round(values)) else "{:.2f}"

    k = len(names)
    side = min(MAX_FIGURE_INCHES, max(5.0, 0.55 * k + 2.5))
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot(1, 1, 1)
    vmax = 1.0 if normalize else max(float(values.max()), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)

    label_size = max(5.0, min(10.0, 220.0 / k))
    # Short names (digits) read best upright; longer ones are slanted so they do not overlap.
    slanted = max(len(name) for name in names) > 3
    ax.set_xticks(np.arange(k), labels=names, rotation=45 if slanted else 0,
                  ha="right" if slanted else "center", rotation_mode="anchor",
                  fontsize=label_size)
    ax.set_yticks(np.arange(k), labels=names, fontsize=label_size)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title("Confusion matrix" + (" (normalized by true label)" if normalize else ""))

    if k <= MAX_ANNOTATED_CLASSES:
        # White text on the dark half of the colour map, black on the light half.
        cell_size = max(5.0, min(11.0, 160.0 / k))
        shade = np.asarray(image.norm(values))  # each cell's place on the colour map, 0 to 1
        for (row, col), value in np.ndenumerate(values):
            dark = shade[row, col] > 0.5
            ax.text(col, row, fmt.format(value), ha="center", va="center",
                    fontsize=cell_size, color="white" if dark else "black")
    return save_figure(fig, path)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """Map images to 0..255 so every grid uses one fixed grey scale (no autoscaling)."""
    if images.dtype == np.uint8:
        return images
    if images.dtype == bool:
        return images.astype(np.uint8) * 255
    pixels = images.astype(float)
    if not np.all(np.isfinite(pixels)):
        raise DataError("images contain NaN or infinite values. Received: non-finite pixels.")
    if np.issubdtype(images.dtype, np.floating) and pixels.size and pixels.max() <= 1.0:
        pixels = pixels * 255.0  # floats already scaled to [0, 1]
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def plot_image_grid(
    images: np.ndarray,
    titles: Sequence[str],
    path: str | os.PathLike[str],
    *,
    ncols: int = 5,
    title_colors: Sequence[str] | None = None,
    suptitle: str | None = None,
) -> Path:
    """Show images in a grid, each with its title (e.g. ``"Digit: 5"``).

    ``images`` is (N, H, W), (N, H, W, 1) or (N, H, W, 3), ideally uint8
    (floats in [0, 1] are scaled to 0..255). Grey images use the "gray" colour
    map on a fixed 0..255 scale with interpolation "none", so pixels look as
    the model sees them. ``title_colors`` (one per image) can mark mistakes red.

    Example:
        >>> plot_image_grid(x[:9], [f"Digit: {d}" for d in y[:9]], "digits.png", ncols=3)  # doctest: +SKIP
    """
    array = np.asarray(images)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 3 or (array.ndim == 4 and array.shape[-1] == 3)) or array.shape[0] == 0:
        raise DataError(
            "images must be a non-empty batch shaped (N, H, W), (N, H, W, 1) or (N, H, W, 3). "
            f"Received: shape {np.shape(images)}.",
            hint="Add the batch axis for a single image: images[None].",
        )
    n = array.shape[0]
    if len(titles) != n:
        raise DataError(f"Expected one title per image ({n}). Received: {len(titles)} titles.")
    if title_colors is not None and len(title_colors) != n:
        raise DataError(
            f"Expected one title colour per image ({n}). Received: {len(title_colors)} colours."
        )
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ConfigError(f"ncols must be a positive integer. Received: ncols={ncols!r}.")
    if array.dtype.kind not in "biuf":
        raise DataError(f"images must hold numbers. Received: dtype {array.dtype}.")
    array = _to_uint8(array)

    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    height, width = array.shape[1:3]
    cell_w = 2.2
    cell_h = cell_w * min(2.0, max(0.5, height / width)) + 0.45  # room for the title
    extra = 0.5 if suptitle else 0.0
    fig = Figure(figsize=(cols * cell_w, rows * cell_h + extra))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        if array.ndim == 3:
            ax.imshow(array[i], cmap="gray", vmin=0, vmax=255, interpolation="none")
        else:
            ax.imshow(array[i], interpolation="none")
        color = title_colors[i] if title_colors is not None else "black"
        ax.set_title(str(titles[i]), color=color, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle)
    return save_figure(fig, path)


def plot_reliability(cal: Calibration, path: str | os.PathLike[str]) -> Path:
    """Reliability diagram (accuracy per confidence bin against the diagonal) over a count histogram."""
    fig = Figure(figsize=(5.5, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = np.diff(cal.edges)
    filled = cal.count > 0
    top.bar(cal.edges[:-1][filled], cal.accuracy[filled], width=width[filled], align="edge",
            edgecolor="black", color="#4c72b0", label="accuracy")
    top.bar(cal.edges[:-1][filled], (cal.confidence - cal.accuracy)[filled], bottom=cal.accuracy[filled],
            width=width[filled], align="edge", color="#dd8452", alpha=0.5, label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"Reliability diagram (ECE {cal.ece:.2%}, {len(cal.count)} bins)")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(cal.edges[:-1], cal.count, width=width, align="edge", color="grey", edgecolor="black")
    bottom.set_yscale("symlog")
    bottom.set_xlabel("confidence (largest probability)")
    bottom.set_ylabel("predictions")
    bottom.set_xlim(0, 1)
    return save_figure(fig, path)


def plot_lr_find(lrs: ArrayLike, losses: ArrayLike, smoothed: ArrayLike,
                 suggestions: Mapping[str, float], path: str | os.PathLike[str], *,
                 title: str = "Learning-rate range test") -> Path:
    """A learning-rate range test: loss against learning rate (log axis), each suggestion marked with its value.

    Each batch's loss is drawn faint, the smoothed loss over it; the y-axis spans the smoothed curve,
    so a diverging batch's loss does not flatten the rest.

    Example:
        >>> plot_lr_find(r.lrs, r.losses, r.smoothed, {"valley": r.valley}, "lr_find.png")  # doctest: +SKIP
    """
    rates, raw, smooth = (np.asarray(v, dtype=float) for v in (lrs, losses, smoothed))
    if not (rates.ndim == 1 and rates.size and rates.shape == raw.shape == smooth.shape):
        raise DataError("lrs, losses and smoothed must be flat lists of one value per step, of one length. "
                        f"Received: lengths {rates.size}, {raw.size}, {smooth.size}.")
    finite = np.isfinite(smooth)
    if not finite.any() or not np.all(rates > 0):
        raise DataError("Expected learning rates > 0 and at least one smoothed loss that is a number. "
                        f"Received: smallest lr {rates.min():g}, {int(finite.sum())} finite smoothed losses.")
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(rates, raw, color="0.7", linewidth=1, label="loss of each batch")
    ax.plot(rates, smooth, color="#4c72b0", linewidth=2, label="smoothed")
    colors = ("#dd8452", "#55a868", "#c44e52", "#8172b3")
    for i, ((name, lr), color) in enumerate(zip(suggestions.items(), colors, strict=False)):
        y = float(np.interp(np.log(lr), np.log(rates[finite]), smooth[finite]))
        ax.axvline(lr, color=color, linestyle="--", linewidth=1)
        ax.plot([lr], [y], "o", color=color, markersize=8, label=f"{name}: {lr:.2e}")
        ax.annotate(f"{name}\n{lr:.2e}", (lr, y), xytext=(6, 10 + 28 * i), textcoords="offset points", color=color,
                    fontsize=9)  # stacked: two suggestions may be close
    low = min(smooth[finite].min(), raw[np.isfinite(raw)].min())  # a finite smoothed value has a finite loss
    high = smooth[finite].max()
    pad = 0.05 * (high - low) or 0.05 * abs(high) or 0.1
    ax.set_ylim(low - pad, high + pad)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return save_figure(fig, path)
