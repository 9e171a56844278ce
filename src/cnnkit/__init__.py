"""cnnkit: build, train, understand and deploy convolutional image classifiers (Keras 3).

The public API mirrors the command line::

    import cnnkit
    data = cnnkit.load_dataset("mnist")                 # uint8 pixels + class names
    model = cnnkit.build_model("article-004")           # preprocessing inside the model
    run = cnnkit.train("mnist", "runs/demo", recipe="fast")  # or a Dataset, arrays; model=...
    predictor = cnnkit.load("runs/demo")                # a run folder, .keras file, or model.json
    predictor.predict(data.x_test[:5])

Attributes are imported on first use (:mod:`cnnkit._lazy`), so ``import cnnkit`` (and ``cnnkit --help``)
stays fast until Keras is actually needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnkit._lazy import attach
from cnnkit._version import __version__ as __version__

if TYPE_CHECKING:
    from cnnkit import explain as explain
    from cnnkit.audits.api import AuditResult as AuditResult
    from cnnkit.audits.api import audit as audit
    from cnnkit.datasets import load as load_dataset  # noqa: F401 - re-exported under the API's name
    from cnnkit.exporting import export_model as export  # noqa: F401 - re-exported under the API's name
    from cnnkit.images import decode_image as decode_image
    from cnnkit.loading import load as load
    from cnnkit.models.build import build_model as build_model
    from cnnkit.pictures import Picture as Picture
    from cnnkit.pictures import plot_confusion_matrix as plot_confusion_matrix
    from cnnkit.pictures import plot_gradcam as plot_gradcam
    from cnnkit.pictures import plot_history as plot_history
    from cnnkit.pictures import plot_predictions as plot_predictions
    from cnnkit.pictures import show_samples as show_samples
    from cnnkit.predictor import Predictor as Predictor
    from cnnkit.presets import PRESETS as PRESETS
    from cnnkit.presets import get_preset as get_preset
    from cnnkit.server.background import serve as serve
    from cnnkit.training.api import evaluate as evaluate
    from cnnkit.training.api import train as train
    from cnnkit.training.config import TrainConfig as TrainConfig
    from cnnkit.training.lr_find import lr_find as lr_find
    from cnnkit.training.result import Evaluation as Evaluation
    from cnnkit.training.result import Run as Run

__getattr__, __dir__, __all__ = attach(__name__, {
    "load_dataset": "cnnkit.datasets:load",
    "build_model": "cnnkit.models.build",
    "TrainConfig": "cnnkit.training.config",
    "train": "cnnkit.training.api",
    "evaluate": "cnnkit.training.api",
    "Run": "cnnkit.training.result",
    "Evaluation": "cnnkit.training.result",
    "lr_find": "cnnkit.training.lr_find",
    "load": "cnnkit.loading",
    "Predictor": "cnnkit.predictor",
    "export": "cnnkit.exporting:export_model",
    "get_preset": "cnnkit.presets",
    "PRESETS": "cnnkit.presets",
    "decode_image": "cnnkit.images",
    "show_samples": "cnnkit.pictures",
    "plot_history": "cnnkit.pictures",
    "plot_confusion_matrix": "cnnkit.pictures",
    "plot_predictions": "cnnkit.pictures",
    "plot_gradcam": "cnnkit.pictures",
    "Picture": "cnnkit.pictures",
    "explain": "cnnkit.explain",
    "serve": "cnnkit.server.background",
    "audit": "cnnkit.audits.api",
    "AuditResult": "cnnkit.audits.api",
}, eager=("__version__",))
