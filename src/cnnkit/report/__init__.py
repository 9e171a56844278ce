"""One self-contained ``report.html`` per run: data, model, training, evaluation, explanations.

``cnnkit train`` writes it at the end of every run; ``cnnkit report RUN`` rebuilds it from the
run folder (model, metrics, history, config) and the run's dataset. The figures it shows are also
left in the run folder as PNG files.

Example:
    >>> build_report("runs/demo")  # doctest: +SKIP
    PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import artifact
from cnnkit.datasets.base import Dataset
from cnnkit.datasets.lazy import take_rows
from cnnkit.dataview import classes_in_turn
from cnnkit.diagnostics import Calibration, calibration, top_losses
from cnnkit.errors import ArtifactError, ConfigError
from cnnkit.fileio import write_text
from cnnkit.plots import plot_image_grid, plot_reliability
from cnnkit.predictor import Predictor
from cnnkit.report import html as h
from cnnkit.report.data_notes import notes_html
from cnnkit.report.files import write_evaluation
from cnnkit.report.html import Section
from cnnkit.report.search import search_section
from cnnkit.training.config import TrainConfig, load_data

__all__ = ["build_report", "write_evaluation"]

SAMPLE_COUNT = 10
TOP_LOSS_COUNT = 15
GRADCAM_CLASSES = 10  # one correctly classified test image per class, at most this many classes


def build_report(run_dir: str | Path, *, predictor: Predictor | None = None, dataset: Dataset | None = None,
                 probs: np.ndarray | None = None, cal: Calibration | None = None) -> Path:
    """Write ``report.html`` (and its figures) into a finished run folder; return its path.

    ``predictor``, ``dataset``, ``probs`` (test-set probabilities) and ``cal`` (their calibration)
    are loaded or computed when not given, so a report can be rebuilt from the run folder alone.
    """
    run_dir = Path(run_dir)
    if artifact.resolve_model_path(run_dir) != run_dir / artifact.MODEL:  # raises for an unfinished run
        raise ArtifactError(f"Expected a run folder (a report needs its metrics and history). Received: {run_dir}.",
                            "Pass the run folder a finished training run wrote (cnnkit train --out).")
    config = artifact.read_json(run_dir / artifact.CONFIG)
    metrics = artifact.read_json(run_dir / artifact.METRICS)
    history_path = run_dir / artifact.HISTORY_JSON
    history = artifact.read_json(history_path) if history_path.is_file() else {}
    if predictor is None:
        predictor = Predictor.from_artifact(run_dir)
    if dataset is None:
        dataset = load_data(TrainConfig.from_run(run_dir).resolve())
    if probs is None:
        probs = predictor.predict_proba(dataset.x_test)
    if cal is None:
        cal = calibration(np.asarray(dataset.y_test), probs)
    sections = [
        _summary(metrics, predictor, cal, len(probs)),
        _data(run_dir, dataset, metrics),
        _model(predictor),
        *([found] if (found := search_section(config)) else []),
        _training(run_dir, history, metrics),
        _evaluation(run_dir, metrics),
        _top_losses(run_dir, dataset, probs),
        _gradcam(run_dir, predictor, dataset, probs),
        _calibration(run_dir, cal),
        _environment(config),
    ]
    name = config.get("train", {}).get("recipe") or config.get("train", {}).get("preset", "")
    title = f"cnnkit run {run_dir.name}"
    subtitle = (f"recipe {name} on {dataset.name}; report written "
                f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    path = run_dir / artifact.REPORT
    write_text(path, h.page(title, subtitle, sections))
    return path


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2%}"


def _summary(metrics: dict, predictor: Predictor, cal: Calibration, test_size: int) -> Section:
    items = [
        ("test accuracy", _pct(metrics.get("test_accuracy"))),
        ("balanced accuracy", _pct(metrics.get("balanced_accuracy"))),
        ("test loss", f"{metrics.get('test_loss', float('nan')):.4f}"),
        ("macro F1", f"{metrics.get('macro_f1', float('nan')):.4f}"),
        ("calibration error (ECE)", _pct(cal.ece)),
        ("epochs", str(metrics.get("epochs", "–"))),
        ("training time", f"{metrics.get('train_seconds', 0):.0f} s"),
        ("parameters", f"{predictor.model.count_params():,}"),
    ]
    if metrics.get("tta"):  # the number above averages shifted views; say what one view scores
        items.insert(1, ("one view, no TTA", _pct(metrics.get("test_accuracy_single_view"))))
    note = (f"<p class=\"note\">Test set: {test_size:,} images, touched once after training. Model choices "
            "(schedule, early stopping) used the validation split only.</p>")
    return Section("summary", "Summary", h.cards(items) + note)


def _data(run_dir: Path, dataset: Dataset, metrics: dict) -> Section:
    y = np.asarray(dataset.y_train)
    counts = np.bincount(y, minlength=dataset.num_classes)
    test_counts = np.bincount(np.asarray(dataset.y_test), minlength=dataset.num_classes)
    rows = [(name, f"{int(counts[i]):,}", f"{int(test_counts[i]):,}") for i, name in enumerate(dataset.class_names)]
    body = (f"<p>{h.esc(dataset.name)} from {h.esc(dataset.source or '–')}: input {h.esc(dataset.input_shape)}, "
            f"{dataset.num_classes} classes; training {metrics.get('train_size', '–')}, validation "
            f"{metrics.get('val_size', '–')}, test {len(dataset.y_test)} images.</p>")
    # MNIST-like data carves validation out of x_train during fit; folders come with it split off.
    train_header = "train + validation" if dataset.x_val is None else "train"
    body += h.table(("class", train_header, "test"), rows)
    body += notes_html(dataset.notes, dataset.report)  # collapsed: thumbnails and counts, the raw text last
    # One image per class in turn, so every class shows up in the grid.
    order = np.sort(classes_in_turn(y, dataset.num_classes)[:SAMPLE_COUNT])
    titles = [f"Label: {dataset.class_names[label]}" for label in y[order]]
    plot_image_grid(take_rows(dataset.x_train, order), titles, run_dir / artifact.SAMPLES_PNG)
    body += h.image(run_dir / artifact.SAMPLES_PNG, "sample training images",
                    "Training images as the model receives them.")
    return Section("data", "Data", body)


def _model(predictor: Predictor) -> Section:
    from cnnkit.explain.table import explain_model

    meta = predictor.metadata
    body = (f"<p>Input: raw uint8 pixels {h.esc(tuple(meta.input_shape))}, colour mode {h.esc(meta.color_mode)}, "
            f"resize {h.esc(meta.resize)}; preprocessing and augmentation are layers inside the model.</p>")
    try:
        table = explain_model(predictor.model).to_html()
    except ConfigError as err:  # a layer the table does not know: the run it reports on is still whole
        table = f'<p class="note">No layer table: {h.esc(err.message)}</p>'
    return Section("model", "Model, layer by layer", body + table)


def _training(run_dir: Path, history: dict, metrics: dict) -> Section:
    body = ""
    if (run_dir / artifact.CURVES).is_file():
        body += h.image(run_dir / artifact.CURVES, "training curves",
                        "Accuracy and loss per epoch, training vs validation.")
    shown = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")
    keys = [k for k in shown if k in history]
    epochs = len(history.get("loss", []))
    rows = [[str(e + 1)] + [f"{history[k][e]:.4g}" if e < len(history[k]) else "–" for k in keys]
            for e in range(epochs)]
    body += h.table(["epoch", *keys], rows)
    speed = metrics.get("train_images_per_second")
    body += (f"<p>Training took {metrics.get('train_seconds', 0):.1f} s"
             + (f" ({speed:,.0f} images/s)" if speed else "")
             + f"; inference on the test set ran at {metrics.get('inference_images_per_second', 0):,.0f} images/s.</p>")
    return Section("training", "Training and timings", body)


def _evaluation(run_dir: Path, metrics: dict) -> Section:
    body = ""
    if (run_dir / artifact.CONFUSION_MATRIX_PNG).is_file():
        body += h.image(run_dir / artifact.CONFUSION_MATRIX_PNG, "confusion matrix",
                        "Rows: true class; columns: predicted.")
    per_class = metrics.get("per_class", [])
    body += h.table(("class", "precision", "recall", "F1", "support"),
                    [(r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"])
                     for r in per_class])
    pairs = metrics.get("most_confused", [])
    body += "<h3>Most confused pairs</h3>" + (
        h.table(("true", "predicted as", "count"), [(p["true"], p["predicted"], p["count"]) for p in pairs])
        if pairs else "<p>None: no test image was misclassified.</p>")
    if (run_dir / artifact.PREDICTIONS_PNG).is_file():
        body += h.image(run_dir / artifact.PREDICTIONS_PNG, "predictions",
                        "Test images with predicted labels; mistakes in red.")
    return Section("evaluation", "Evaluation on the test set", body)


def _top_losses(run_dir: Path, dataset: Dataset, probs: np.ndarray) -> Section:
    y = np.asarray(dataset.y_test)
    order, losses = top_losses(y, probs, k=min(TOP_LOSS_COUNT, len(y)))
    names = dataset.class_names
    pred = probs.argmax(axis=1)
    titles = [f"{names[y[i]]}→{names[pred[i]]} {probs[i, pred[i]]:.2f}\nloss {loss:.2f}"
              for i, loss in zip(order, losses)]
    colors = ["red" if pred[i] != y[i] else "black" for i in order]
    plot_image_grid(take_rows(dataset.x_test, order), titles, run_dir / artifact.TOP_LOSSES_PNG, title_colors=colors)
    caption = "Test images the model got most wrong: true→predicted, its probability, and the loss."
    return Section("top-losses", "Top losses", h.image(run_dir / artifact.TOP_LOSSES_PNG, "top losses", caption))


def _gradcam(run_dir: Path, predictor: Predictor, dataset: Dataset, probs: np.ndarray) -> Section:
    from cnnkit.explain.gradcam import grad_cam, overlay

    y = np.asarray(dataset.y_test)
    pred = probs.argmax(axis=1)
    picks = [int(np.flatnonzero((y == c) & (pred == c))[0]) for c in range(min(dataset.num_classes, GRADCAM_CLASSES))
             if ((y == c) & (pred == c)).any()]
    if not picks:
        return Section("gradcam", "Grad-CAM", "<p>No correctly classified test image to explain.</p>")
    images = np.asarray(take_rows(dataset.x_test, np.array(picks)))
    heatmaps = grad_cam(predictor.model, images, class_index=[int(pred[i]) for i in picks])
    titles = [f"{dataset.class_names[pred[i]]} {probs[i, pred[i]]:.2f}" for i in picks]
    plot_image_grid(overlay(images, heatmaps), titles, run_dir / artifact.GRADCAM_PNG)
    caption = ("Where the last convolutional feature maps drive each image's predicted class (Grad-CAM, "
               "Selvaraju et al. 2017): warm colours mark the pixels that raised its score.")
    return Section("gradcam", "Grad-CAM: what the network looks at",
                   h.image(run_dir / artifact.GRADCAM_PNG, "Grad-CAM", caption))


def _calibration(run_dir: Path, cal: Calibration) -> Section:
    plot_reliability(cal, run_dir / artifact.RELIABILITY_PNG)
    body = (f"<p>Expected calibration error <b>{cal.ece:.2%}</b>, largest bin gap {cal.mce:.2%} "
            f"({len(cal.count)} equal-width confidence bins). A well-calibrated model that says 90 % is right "
            "90 % of the time; bars below the diagonal mean over-confidence.</p>")
    return Section("calibration", "Calibration",
                   body + h.image(run_dir / artifact.RELIABILITY_PNG, "reliability diagram"))


def _environment(config: dict) -> Section:
    env = config.get("environment", {})
    train = config.get("train", {})
    body = h.table(("what", "value"), sorted(env.items()))
    body += "<h3>Training configuration</h3>" + h.table(("option", "value"), sorted((k, v) for k, v in train.items()))
    return Section("environment", "Environment and configuration", body)
