"""The run folder and the model file: what a training run leaves behind, and every file's name.

``model.keras`` is Keras' own zip format plus one extra member, ``cnnkit.json``,
holding what the articles' saved models lost: class names, input shape, colour
mode, resize policy and the recipe. The model itself holds the preprocessing as
layers, so it takes raw ``uint8`` pixels, and it loads with plain
``keras.saving.load_model`` too (Keras ignores the extra member).

Every write is atomic (temporary file + rename): a killed process never leaves
a half-written model behind. Nothing here imports Keras until a model is loaded, and nothing comes
from training: what serves a model (engines, predictor, server) reads run folders through this module.
"""

from __future__ import annotations

import difflib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnkit.errors import ArtifactError
from cnnkit.fileio import atomic_path
from cnnkit.tta import check_spec

if TYPE_CHECKING:
    from cnnkit._backend import keras

# Run-folder layout: one name per file, used everywhere.
MODEL = "model.keras"
CONFIG = "config.json"
METRICS = "metrics.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
CURVES = "curves.png"
DATA_REPORT = "data_report.txt"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT = f"{CHECKPOINT_DIR}/last.keras"
CONFUSION_MATRIX_CSV = "confusion_matrix.csv"
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
PER_CLASS_CSV = "per_class.csv"
PREDICTIONS_PNG = "predictions.png"
REPORT = "report.html"
SAMPLES_PNG = "samples.png"
TOP_LOSSES_PNG = "top_losses.png"
GRADCAM_PNG = "gradcam.png"
RELIABILITY_PNG = "reliability.png"
TUNE_JSON = "tune.json"  # cnnkit tune's run folder only
METADATA_MEMBER = "cnnkit.json"
FORMAT = "cnnkit-model/1"
H5_METADATA_ATTR = "cnnkit"

# Layers whose saved config can carry executable code.
_UNSAFE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda"}


@dataclass
class ModelMetadata:
    """What a saved model must carry besides its weights."""

    class_names: list[str]
    input_shape: list[int]
    color_mode: str
    resize: str = "stretch"
    recipe: str = ""
    dataset: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Test-time augmentation the predictor applies ({} = none; see cnnkit.tta).
    tta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "class_names": list(self.class_names), "input_shape": list(self.input_shape),
                "color_mode": self.color_mode, "resize": self.resize, "recipe": self.recipe,
                "dataset": self.dataset, "extra": self.extra, "tta": dict(self.tta)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> ModelMetadata:
        missing = [k for k in ("class_names", "input_shape", "color_mode") if k not in data]
        if missing:
            raise ArtifactError(f"Model metadata in {where} lacks {missing}. Received keys: {sorted(data)}.",
                                "Re-save the model with cnnkit (cnnkit export / cnnkit train).")
        return cls(class_names=[str(c) for c in data["class_names"]], input_shape=[int(v) for v in data["input_shape"]],
                   color_mode=str(data["color_mode"]), resize=str(data.get("resize", "stretch")),
                   recipe=str(data.get("recipe", data.get("preset", ""))),  # "preset": before layout II
                   dataset=str(data.get("dataset", "")),
                   extra=dict(data.get("extra", {})), tta=check_spec(data.get("tta"), f"tta of {where}"))


def save_model(model: keras.Model, path: str | Path, metadata: ModelMetadata) -> Path:
    """Save ``model`` with ``metadata`` to ``path`` (a ``.keras`` file), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata.to_dict(), indent=2))
    return path


def check_safe_config(config: Any, where: str) -> None:
    """Refuse a model config that could run code on load (Lambda layers, foreign modules)."""
    if isinstance(config, dict):
        name = config.get("class_name")
        module = config.get("module")
        if name in _UNSAFE_LAYERS:
            raise ArtifactError(
                f"Refusing to load {where}: it contains a {name} layer, whose saved Python code would run on load.",
                "Rebuild the model without Lambda layers (cnnkit presets never use them).",
            )
        if isinstance(module, str) and module and not module.startswith("keras"):
            raise ArtifactError(
                f"Refusing to load {where}: it needs code from module {module!r} (class {name!r}), "
                "which is unsafe deserialization.",
                "Only models made of Keras' built-in layers can be loaded.",
            )
        for value in config.values():
            check_safe_config(value, where)
    elif isinstance(config, list):
        for value in config:
            check_safe_config(value, where)


def _read_member(path: Path, member: str) -> dict[str, Any] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            if member not in archive.namelist():
                return None
            return json.loads(archive.read(member))
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable .keras model file: {exc}.",
                            "The file may be truncated; retrain or copy it again.") from exc


def load_model(path: str | os.PathLike[str], *,
               compile: bool = False) -> tuple[keras.Model, ModelMetadata]:  # noqa: A002 - Keras' own name
    """Load a cnnkit model file (or run folder) safely; return the model and its metadata.

    Raises:
        ArtifactError: the file is missing, corrupt, lacks cnnkit metadata, or is unsafe.
    """
    path = resolve_model_path(path)
    config = _read_member(path, "config.json")
    if config is None:
        raise ArtifactError(f"{path} has no config.json member: not a Keras 3 .keras file.")
    check_safe_config(config, str(path))
    meta = _read_member(path, METADATA_MEMBER)
    if meta is None:
        raise ArtifactError(f"{path} carries no cnnkit metadata (class names, input shape, colour mode).",
                            "Train it with cnnkit, or import an architecture+weights pair with "
                            "cnnkit.load(json, weights).")
    metadata = ModelMetadata.from_dict(meta, str(path))
    from cnnkit._backend import keras  # only now: reading names and metadata needs no Keras

    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:  # a damaged archive; anything else is a bug
        raise ArtifactError(f"Cannot load {path}: {exc}", "The file may be damaged; retrain or copy it again.") from exc
    return model, metadata


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """Accept a run folder or a ``.keras`` file; return the model file, or raise ArtifactError."""
    path = Path(path)
    if path.is_dir():
        unfinished = unfinished_run(path)
        if unfinished is not None:
            raise ArtifactError(f"Run folder {path} is unfinished: {unfinished} (it was stopped, or is still "
                                f"training), so it has no {MODEL} yet.",
                                f"Finish it with cnnkit.train(..., out={str(path)!r}, resume=True), then try again.",
                                cli_hint=f"Finish it with `cnnkit train --out {path} --resume`, then try again.")
        if not (path / MODEL).is_file():
            raise ArtifactError(f"Expected a finished run folder, holding {MODEL}. Received: {path}, which has none.",
                                "Pass the out folder of a finished cnnkit.train(), or a .keras file.",
                                cli_hint="Pass the --out folder of a finished `cnnkit train`, or a .keras file.")
        path = path / MODEL
    if not path.is_file():
        raise ArtifactError(f"Model not found. Received: {path}.{_did_you_mean(path)}",
                            "Pass the out folder of a finished cnnkit.train(), or a .keras file.",
                            cli_hint="Pass a run folder made by `cnnkit train` or a .keras file.")
    return path


def _did_you_mean(path: Path) -> str:
    """`` Did you mean 'runs/fast-mnist'?`` for the nearest run folder or model file beside ``path`` ("" if none)."""
    parent = path.parent
    try:
        near = [p.name for p in parent.iterdir() if (p / MODEL).is_file() or p.suffix == ".keras"]
    except OSError:  # no such parent folder, or unreadable: nothing to suggest
        return ""
    close = difflib.get_close_matches(path.name, near, n=1, cutoff=0.6)
    return f" Did you mean {str(parent / close[0])!r}?" if close else ""


def unfinished_run(run_dir: str | Path) -> str | None:
    """How far a run that has not saved its model yet got (killed, or still training); None if not one.

    Example:
        >>> unfinished_run("runs/killed")  # doctest: +SKIP
        '3 of 27 epochs completed'
    """
    run_dir = Path(run_dir)
    if (run_dir / MODEL).is_file() or not (run_dir / CONFIG).is_file():
        return None
    record = read_json(run_dir / CONFIG)
    if record.get("search") and not record["search"].get("done"):  # recipe auto's search (cnnkit.training.search)
        return "its search for a recipe was under way"
    done = len(read_json(run_dir / HISTORY_JSON).get("loss", []))
    planned = record.get("train", {}).get("epochs")
    if planned and record.get("preset", {}).get("backbone"):  # the head's epochs, then fine-tuning's
        fine_tune = record["train"].get("fine_tune")
        planned += record["preset"].get("fine_tune", 0) if fine_tune is None else fine_tune
    return f"{done} of {planned or '?'} epochs completed"


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The raw ``cnnkit.json`` of a model file (empty dict when absent)."""
    return _read_member(resolve_model_path(path), METADATA_MEMBER) or {}


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON file of a run folder; a missing file is an empty dict."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}.") from exc
