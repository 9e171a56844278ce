"""What training returns: the run folder, its metrics, history and model, shown as text or inline in Jupyter.

A :class:`Run` is a handle on a run folder. It holds the trained model when training made it, and
reads the rest (history, model, report) from the folder when asked, so a run opened later
(:meth:`Run.open`) behaves the same. In a terminal it prints one line; in a notebook it shows its
figures (``_repr_html_``), and :meth:`Run.report` shows the whole report inline, in an iframe so that its
styles stay inside it.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnkit import artifact, evaluation
from cnnkit.errors import ArtifactError

if TYPE_CHECKING:
    import keras

    from cnnkit.pictures import Picture
    from cnnkit.predictor import Predictor


def _count(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def tta_line(metrics: dict[str, Any]) -> str:
    """The line that says a figure averages test-time views, and what one view scores ("" without TTA)."""
    if not metrics.get("tta"):
        return ""
    return (f"  (test-time augmentation {metrics['tta']}: averages shifted copies; one view scores "
            f"{metrics['test_accuracy_single_view']:.2%})")


def metrics_lines(metrics: dict[str, Any]) -> list[str]:
    """The test figures as the CLI prints them after training: accuracy, balanced accuracy, loss, recalls."""
    m = metrics
    lines = [f"Test accuracy: {m['test_accuracy']:.2%}  balanced: {m['balanced_accuracy']:.2%}  test loss: "
             f"{m['test_loss']:.4f}  ({_count(m['epochs'], 'epoch')}, {m['train_seconds']:.1f} s training)"]
    recalls = ", ".join(f"{row['class']} {row['recall']:.1%}" for row in m.get("per_class", []))
    if recalls:
        lines.append(f"  recall per class: {recalls}")
    return [*lines, *filter(None, [tta_line(m)])]


@dataclass(repr=False)
class Run:
    """A finished training run: ``run_dir``, its test ``metrics``, and (lazily) its history and model.

    Example:
        >>> run = cnnkit.train("mnist", recipe="fast", epochs=1)  # doctest: +SKIP
        >>> run  # doctest: +SKIP
        Run('runs/fast-mnist'): test accuracy 98.61%, 1 epoch, recipe fast
        >>> run.model.predict(x[:1])  # doctest: +SKIP
    """

    run_dir: Path
    metrics: dict[str, Any]
    written: bool = True  # False on the other processes of a data-parallel run: only process 0 writes
    trained_model: Any = field(default=None, compare=False)  # the model training made, when this process made it

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        """The finished run in ``run_dir`` (what :func:`cnnkit.train` returned when it wrote it)."""
        run_dir = Path(run_dir)
        if not (run_dir / artifact.METRICS).is_file() or not (run_dir / artifact.MODEL).is_file():
            raise ArtifactError(f"Expected a finished run folder (with {artifact.MODEL} and {artifact.METRICS}). "
                                f"Received: {str(run_dir)!r}.",
                                "Pass the out folder of a finished cnnkit.train(...), or train into it first.")
        return cls(run_dir, artifact.read_json(run_dir / artifact.METRICS))

    @property
    def test_accuracy(self) -> float:
        """Accuracy on the test set, touched once, at the end of training."""
        return float(self.metrics["test_accuracy"])

    @property
    def history(self) -> dict[str, list[float]]:
        """Per-epoch losses and accuracies (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ...)."""
        return artifact.read_json(self.run_dir / artifact.HISTORY_JSON) or {}

    @property
    def config(self) -> dict[str, Any]:
        """The run's ``config.json``: the settings it trained with, its recipe as data, what chose them."""
        return artifact.read_json(self.run_dir / artifact.CONFIG)

    @property
    def model(self) -> keras.Model:
        """The trained Keras model (takes raw uint8 pixels; its preprocessing is inside)."""
        if self.trained_model is None:
            self.trained_model = artifact.load_model(self.run_dir / artifact.MODEL)[0]
        return self.trained_model

    def predictor(self) -> Predictor:
        """A :class:`~cnnkit.predictor.Predictor` for this run: class names, decoding and test-time views included."""
        from cnnkit.predictor import Predictor

        return Predictor.from_artifact(self.run_dir)

    def summary(self) -> str:
        """The test figures and the run folder, as ``cnnkit train`` prints them."""
        return "\n".join([*metrics_lines(self.metrics), *([f"Run folder: {self.run_dir}"] if self.written else [])])

    def plot_history(self) -> Picture:
        """Accuracy and loss per epoch, training against validation (inline in Jupyter)."""
        from cnnkit.pictures import plot_history

        return plot_history(self)

    def report(self) -> Report:
        """The run's ``report.html``: shown inline in a notebook, its path in a terminal."""
        return Report(self.run_dir / artifact.REPORT)

    def __repr__(self) -> str:
        m = self.metrics
        recipe = self.config.get("preset", {}).get("name", "?") if self.written else "?"
        return (f"Run({str(self.run_dir)!r}): test accuracy {m['test_accuracy']:.2%}, "
                f"{_count(int(m.get('epochs', 0)), 'epoch')}, recipe {recipe}")

    def _repr_html_(self) -> str:
        m = self.metrics
        cells = (("test accuracy", f"{m['test_accuracy']:.2%}"), ("balanced", f"{m['balanced_accuracy']:.2%}"),
                 ("test loss", f"{m['test_loss']:.4f}"), ("epochs", m.get("epochs")),
                 ("training", f"{m.get('train_seconds', 0):.1f} s"))
        shown = [self.run_dir / name for name in (artifact.CURVES, artifact.CONFUSION_MATRIX_PNG)]
        figures = "".join(_img(path.read_bytes(), path.name) for path in shown if path.is_file())
        return (f"<div><code>{html.escape(str(self.run_dir))}</code>{_cards(cells)}{figures}"
                f"<div>{html.escape(tta_line(m))}</div></div>")


@dataclass(repr=False)
class Report:
    """A run's self-contained ``report.html``: inline in Jupyter (an iframe: its styles stay inside)."""

    path: Path
    height: int = 720

    def __repr__(self) -> str:
        return f"Report({str(self.path)!r})"

    def _repr_html_(self) -> str:
        if not self.path.is_file():
            return f"<p>No report at {html.escape(str(self.path))}.</p>"
        page = html.escape(self.path.read_text(encoding="utf-8"), quote=True)
        return (f'<iframe srcdoc="{page}" title="cnnkit report" '
                f'style="width:100%;height:{self.height}px;border:1px solid #ddd"></iframe>')


@dataclass(repr=False)
class Evaluation(evaluation.Evaluation):
    """An :class:`cnnkit.evaluation.Evaluation` (accuracy, loss, confusion matrix, per-class table) that draws
    itself: its confusion matrix inline in Jupyter, or to a PNG file."""

    @classmethod
    def of(cls, result: evaluation.Evaluation) -> Evaluation:
        """``result``'s numbers, in an object that shows them."""
        return cls(**{f.name: getattr(result, f.name) for f in dataclasses.fields(result)})

    def plot_confusion_matrix(self, normalize: bool = False) -> Picture:
        """The confusion matrix as a picture (inline in Jupyter; ``.save(path)`` writes the PNG)."""
        from cnnkit.pictures import plot_confusion_matrix

        return plot_confusion_matrix(self, normalize=normalize)

    def _repr_html_(self) -> str:
        figure = _img(self.plot_confusion_matrix().png, "confusion matrix", width="60%")
        cells = (("accuracy", f"{self.accuracy:.2%}"), ("balanced", f"{self.balanced_accuracy:.2%}"),
                 ("loss", f"{self.loss:.4f}"), ("macro F1", f"{self.macro_f1:.4f}"),
                 ("images", f"{int(self.confusion.sum()):,}"))
        return f"<div>{_cards(cells)}{figure}</div>"


def _cards(cells: tuple[tuple[str, Any], ...]) -> str:
    """One row of figures, each over its name; styles inline, so nothing leaks into the notebook's page."""
    row = "".join(f'<td style="padding:2px 12px"><b>{html.escape(str(v))}</b><br>{html.escape(k)}</td>'
                  for k, v in cells)
    return f"<table><tr>{row}</tr></table>"


def _img(png: bytes, alt: str, width: str = "48%") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" style="max-width:{width};margin:4px">'

