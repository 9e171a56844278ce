"""Tests for cnnkit.plots: valid PNGs of sensible size, errors that say what was wrong."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit import plots
from cnnkit.errors import ConfigError, DataError
from cnnkit.plots import plot_confusion_matrix, plot_history, plot_image_grid

HISTORY = {
    "accuracy": [0.80, 0.90, 0.95],
    "val_accuracy": [0.85, 0.91, 0.93],
    "loss": [0.60, 0.30, 0.20],
    "val_loss": [0.50, 0.35, 0.30],
}


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # fails on a truncated file
        return image.size


def red_pixels(path: Path) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(np.sum((rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)))


def test_modules_import_neither_keras_nor_pyplot():
    # Plotting must work without a deep-learning backend and must not touch pyplot's state.
    for module in ("plots.py", "evaluation.py"):
        source = (Path(plots.__file__).parent / module).read_text(encoding="utf-8")
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        forbidden = {n for n in imported if n.split(".")[0] in {"keras", "tensorflow"}}
        forbidden |= {n for n in imported if n.startswith("matplotlib.pyplot")}
        assert not forbidden, f"{module} imports {forbidden}"


def test_plot_history_writes_two_panel_png(tmp_path):
    path = plot_history({**HISTORY, "learning_rate": [1e-3] * 3}, tmp_path / "history.png")
    assert path == tmp_path / "history.png"
    width, height = png_size(path)
    assert width > 1.5 * height  # two panels side by side
    assert [p.name for p in tmp_path.iterdir()] == ["history.png"]  # no temporaries left


def test_plot_history_skips_missing_keys(tmp_path):
    both = png_size(plot_history(HISTORY, tmp_path / "both.png"))
    loss_only = png_size(plot_history({"loss": [1.0, 0.5], "accuracy": []}, tmp_path / "loss.png"))
    assert loss_only[0] < 0.7 * both[0]  # the empty accuracy panel is left out


def test_plot_history_without_known_keys_raises(tmp_path):
    with pytest.raises(DataError, match=r"none of the keys.*Received: keys \['lr'\]"):
        plot_history({"lr": [0.1]}, tmp_path / "h.png")
    with pytest.raises(DataError, match=r"Received: history of type list.*\.history"):
        plot_history([0.1, 0.2], tmp_path / "h.png")
    with pytest.raises(DataError, match=r"history\['loss'\].*shape \(2, 2\)"):
        plot_history({"loss": [[1, 2], [3, 4]]}, tmp_path / "h.png")
    assert not list(tmp_path.iterdir())


def test_plots_leave_a_users_pyplot_state_alone(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    backend = plt.get_backend()
    before = plt.get_fignums()
    for i in range(2):
        plot_history(HISTORY, tmp_path / f"h{i}.png")
        plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b", "c"], tmp_path / f"c{i}.png")
    assert plt.get_fignums() == before
    assert plt.get_backend() == backend


def test_confusion_matrix_png_scales_with_classes(tmp_path):
    rng = np.random.default_rng(0)
    small = png_size(plot_confusion_matrix(rng.integers(0, 50, (3, 3)), list("abc"),
                                           tmp_path / "small.png"))
    names = [f"class {i}" for i in range(12)]
    large = png_size(plot_confusion_matrix(rng.integers(0, 500, (12, 12)), names,
                                           tmp_path / "large.png"))
    assert large[0] > small[0] and large[1] > small[1]
    assert 300 <= small[0] <= 1500


def test_confusion_matrix_normalize_handles_empty_rows(tmp_path):
    cm = np.array([[5, 1, 0], [0, 0, 0], [2, 0, 7]])
    path = plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "cm.png", normalize=True)
    assert png_size(path)[0] > 100


def test_confusion_matrix_many_classes_stays_bounded(tmp_path):
    cm = np.diag(np.arange(1, 61))
    width, height = png_size(plot_confusion_matrix(cm, [str(i) for i in range(60)],
                                                   tmp_path / "cm.png"))
    assert width <= plots.MAX_FIGURE_INCHES * 1.2 * plots.DPI + 200
    assert height <= plots.MAX_FIGURE_INCHES * plots.DPI + 1


@pytest.mark.parametrize(
    ("cm", "names", "pattern"),
    [
        (np.zeros((2, 3)), ["a", "b"], r"square \(K, K\).*Received: shape \(2, 3\)"),
        (np.zeros((3, 3)), ["a", "b"], r"cm has 3 classes but class_names has 2"),
        (np.array([[1, -1], [0, 2]]), ["a", "b"], r"counts >= 0.*Received: minimum -1"),
        (np.array([[1, np.nan], [0, 2]]), ["a", "b"], r"finite numbers"),
    ],
)
def test_confusion_matrix_rejects_bad_input(tmp_path, cm, names, pattern):
    with pytest.raises(DataError, match=pattern):
        plot_confusion_matrix(cm, names, tmp_path / "cm.png")


@pytest.mark.parametrize("shape", [(6, 12, 12), (6, 12, 12, 1), (6, 12, 12, 3)])
def test_image_grid_accepts_grey_and_rgb(tmp_path, shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = plot_image_grid(images, [f"Digit: {i}" for i in range(6)], tmp_path / "g.png", ncols=3)
    width, height = png_size(path)
    assert 400 <= width <= 1000 and height > 200


def test_image_grid_grows_with_rows(tmp_path):
    images = np.zeros((10, 8, 8), dtype=np.uint8)
    titles = [str(i) for i in range(10)]
    one_row = png_size(plot_image_grid(images[:5], titles[:5], tmp_path / "a.png", ncols=5))
    two_rows = png_size(plot_image_grid(images, titles, tmp_path / "b.png", ncols=5))
    assert two_rows[1] > 1.6 * one_row[1]
    assert abs(two_rows[0] - one_row[0]) < 20


def test_image_grid_title_colors_and_suptitle(tmp_path):
    images = np.full((4, 10, 10), 128, dtype=np.uint8)
    titles = ["Prediction: 1 \u2013 Actual: 1"] * 4
    plain = plot_image_grid(images, titles, tmp_path / "plain.png", ncols=2)
    red = plot_image_grid(images, titles, tmp_path / "red.png", ncols=2,
                          title_colors=["black", "red", "black", "black"], suptitle="Test set")
    assert red_pixels(plain) == 0
    assert red_pixels(red) > 20


def test_image_grid_scales_float_images_to_the_same_picture(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (2, 6, 6), dtype=np.uint8)
    a = plot_image_grid(pixels, ["a", "b"], tmp_path / "a.png")
    b = plot_image_grid(pixels / 255.0, ["a", "b"], tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_image_grid_rejects_bad_input(tmp_path):
    images = np.zeros((3, 8, 8, 1), dtype=np.uint8)
    with pytest.raises(DataError, match=r"\(N, H, W, 3\).*Received: shape \(3, 8, 8, 2\)"):
        plot_image_grid(np.zeros((3, 8, 8, 2)), ["a"] * 3, tmp_path / "g.png")
    with pytest.raises(DataError, match=r"Received: shape \(8, 8\).*images\[None\]"):
        plot_image_grid(np.zeros((8, 8)), ["a"], tmp_path / "g.png")
    with pytest.raises(DataError, match=r"one title per image \(3\)\. Received: 2 titles"):
        plot_image_grid(images, ["a", "b"], tmp_path / "g.png")
    with pytest.raises(DataError, match=r"one title colour per image \(3\)\. Received: 1"):
        plot_image_grid(images, ["a"] * 3, tmp_path / "g.png", title_colors=["red"])
    with pytest.raises(ConfigError, match=r"ncols must be a positive integer\. Received: ncols=0"):
        plot_image_grid(images, ["a"] * 3, tmp_path / "g.png", ncols=0)
    assert not list(tmp_path.iterdir())


def test_glyphs_the_font_lacks_become_one_warning_that_names_them(tmp_path):
    """Class names in a script the default font lacks: one warning naming the characters, not one per glyph."""
    with pytest.warns(UserWarning) as record:
        plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["日本", "café"], tmp_path / "cm.png")
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "日 本" in messages[0] and "fonts-noto-cjk" in messages[0], messages
    assert (tmp_path / "cm.png").stat().st_size > 0
