"""Export a trained model to other formats, and import the articles' JSON + HDF5 pair.

``json-h5`` is what the articles write by hand (``model.to_json()`` and
``model.save_weights``). cnnkit writes the same pair, but the weights file also
carries the model metadata (class names, input shape, colour mode) as an HDF5
attribute, so nothing is lost and the two halves are checked against each other
when imported.

The graph formats (ONNX, LiteRT, SavedModel) are made from
:func:`cnnkit.models.inference_model`: the network without its augmentation and dropout,
batch norm on its moving statistics, so every export answers as Keras' ``predict`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np

from cnnkit._backend import keras
from cnnkit.artifact import H5_METADATA_ATTR, ModelMetadata, check_safe_config, load_model
from cnnkit.errors import ArtifactError, ConfigError, require
from cnnkit.fileio import atomic_path, write_text
from cnnkit.models import inference_model

FORMATS = ("json-h5", "onnx", "litert", "saved_model")
JSON_NAME = "model.json"
WEIGHTS_NAME = "model.weights.h5"
ONNX_NAME = "model.onnx"
LITERT_NAME = "model.tflite"
SAVED_MODEL_NAME = "saved_model"
SIDECAR_NAME = "cnnkit.json"  # class names, input shape, colour mode, resize: beside every export


def export_model(run_or_model: str | Path, out_dir: str | Path, fmt: str = "json-h5") -> list[Path]:
    """Export the model of a run folder (or ``.keras`` file) into ``out_dir``; return the files written.

    Formats: ``json-h5`` (the articles' pair), ``onnx`` (run it with onnxruntime), ``litert``
    (``.tflite``), ``saved_model`` (TensorFlow Serving). Every export takes raw ``uint8`` pixels,
    since preprocessing is part of the model, and comes with ``cnnkit.json`` naming the classes.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown export format. Expected one of {FORMATS}. Received: format={fmt!r}.")
    model, metadata = load_model(run_or_model)
    if fmt == "json-h5":
        # The whole model, augmentation included: this pair is the articles' training artifact
        # (cnnkit.load reads it back, and training can go on from it with the recipe unchanged);
        # Keras predicts from it with training=False, where augmentation and dropout are inert.
        return export_json_h5(model, metadata, out_dir)
    return _export_graph(model, metadata, Path(out_dir), fmt)


def _export_graph(model: keras.Model, metadata: ModelMetadata, out: Path, fmt: str) -> list[Path]:
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"Export to {fmt} runs on the TensorFlow backend. Received: KERAS_BACKEND="
                          f"{keras.backend.backend()}.", "Run the export with KERAS_BACKEND=tensorflow.")
    name = {"onnx": ONNX_NAME, "litert": LITERT_NAME, "saved_model": SAVED_MODEL_NAME}[fmt]
    target = out / name
    with atomic_path(target) as tmp:
        _export_twin(model, tmp, fmt)
        if fmt == "onnx":
            _embed_onnx_metadata(tmp, metadata)
        if fmt == "saved_model":  # a folder: os.replace needs the old one gone
            shutil.rmtree(target, ignore_errors=True)
    sidecar = out / SIDECAR_NAME
    write_text(sidecar, json.dumps(metadata.to_dict(), indent=2) + "\n")
    return [target, sidecar]


def to_onnx(model: keras.Model) -> bytes:
    """``model`` as an ONNX graph, as ``cnnkit export --format onnx`` writes it (without its metadata).

    The ``onnxruntime`` engine (:mod:`cnnkit.engines.onnx`) runs it.
    """
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"Converting to ONNX runs on the TensorFlow backend. Received: KERAS_BACKEND="
                          f"{keras.backend.backend()}.", "Run with KERAS_BACKEND=tensorflow, or use engine keras.")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ONNX_NAME
        _export_twin(model, path, "onnx")
        return path.read_bytes()


def _export_twin(model: keras.Model, path: Path, fmt: str) -> None:
    """Write ``model``'s inference twin to ``path`` in graph format ``fmt``."""
    if fmt == "onnx":
        require("export", "onnx", "tf2onnx", purpose="ONNX export")
    # SavedModel and ONNX trace the model with `training` unset: Keras' augmentation layers then
    # default to training=True and switch every later layer (dropout, batch norm) to training too.
    # The twin has no augmentation and calls each layer with training=False.
    model = inference_model(model)
    # Build every layer. training=False here too: left unset on a model with augmentation, batch norm
    # would update its moving statistics from these zeros (what made LiteRT exports differ).
    model(np.zeros((1, *model.input_shape[1:]), dtype=np.uint8), training=False)
    if fmt == "onnx":
        _normalization_as_variables(model)
    with warnings.catch_warnings():
        # Keras' tf2onnx patch probes np.object, which NumPy 2 answers with this warning: not ours.
        warnings.filterwarnings("ignore", message="In the future `np.object` will be defined",
                                category=FutureWarning)
        model.export(str(path), format={"saved_model": "tf_saved_model"}.get(fmt, fmt), verbose=False)


def _normalization_as_variables(model: keras.Model) -> None:
    """Hold every ``Normalization`` layer's mean and variance in variables, in ``model`` (a throwaway twin).

    Given as constants (as keras.applications' EfficientNetV2 and ConvNeXt, and cnnkit's ResNet50
    preprocessing, give them), they are captured tensors that tf2onnx turns into extra graph inputs
    the user would have to feed; variables are frozen into the graph like every weight.
    """
    import tensorflow as tf

    layers = [model]
    while layers:
        layer = layers.pop()
        layers.extend(getattr(layer, "layers", []))
        if isinstance(layer, keras.layers.Normalization) and not isinstance(layer.mean, tf.Variable):
            layer.mean = tf.Variable(layer.mean, trainable=False)
            layer.variance = tf.Variable(layer.variance, trainable=False)


def _embed_onnx_metadata(path: Path, metadata: ModelMetadata) -> None:
    """Store the metadata in the ONNX file itself (``metadata_props``), so it cannot get lost."""
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = H5_METADATA_ATTR, json.dumps(metadata.to_dict())
    onnx.save(proto, str(path))


def export_json_h5(model: keras.Model, metadata: ModelMetadata, out_dir: str | Path) -> list[Path]:
    """Write ``model.json`` (architecture) and ``model.weights.h5`` (weights + metadata)."""
    out = Path(out_dir)
    json_path, weights_path = out / JSON_NAME, out / WEIGHTS_NAME
    with atomic_path(weights_path) as tmp:
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as handle:
            handle.attrs[H5_METADATA_ATTR] = json.dumps(metadata.to_dict())
    write_text(json_path, model.to_json(indent=2))
    return [json_path, weights_path]


def import_json_h5(json_path: str | os.PathLike[str],
                   weights_path: str | os.PathLike[str] | None = None) -> tuple[keras.Model, ModelMetadata]:
    """Rebuild a model from an architecture JSON and its weights file (safely).

    ``weights_path`` defaults to ``model.weights.h5`` beside the JSON file.
    """
    json_path = Path(json_path)
    weights_path = Path(weights_path) if weights_path else json_path.with_name(WEIGHTS_NAME)
    hint = "Pass the architecture JSON and its weights file (cnnkit export --format json-h5)."
    if not json_path.is_file():
        raise ArtifactError(f"File not found. Received: {json_path}.", hint)
    try:
        config = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{json_path} is not valid JSON: {exc}.") from exc
    check_safe_config(config, str(json_path))  # before anything else is read
    if not weights_path.is_file():
        raise ArtifactError(f"File not found. Received: {weights_path}.", hint)
    try:
        with h5py.File(weights_path, "r") as handle:
            raw = handle.attrs.get(H5_METADATA_ATTR)
    except OSError as exc:
        raise ArtifactError(f"{weights_path} is not a readable HDF5 weights file: {exc}.") from exc
    if raw is None:
        raise ArtifactError(
            f"{weights_path} carries no cnnkit metadata (class names, input shape, colour mode).",
            "Export it with `cnnkit export RUN --format json-h5`; cnnkit does not guess preprocessing or labels.",
        )
    metadata = ModelMetadata.from_dict(json.loads(raw), str(weights_path))
    try:
        model = keras.models.model_from_json(json_path.read_text(encoding="utf-8"))
        model.load_weights(weights_path)
    except (ValueError, KeyError, OSError) as exc:  # what mismatched or damaged files raise; the rest is a bug
        raise ArtifactError(f"The weights in {weights_path} do not fit the architecture in {json_path}: {exc}",
                            "Export the pair again from one run (cnnkit export RUN --format json-h5).") from exc
    return model, metadata
