"""Graph exports (SavedModel, LiteRT, ONNX) answer as Keras does, for every preset.

Each preset is trained for two steps (so weights and batch-norm statistics have moved) and
saved; each export must agree with ``cnnkit.load(path, tta=False).predict_proba`` and give
the same answer twice. A photo model trained through ``cnnkit.run.train`` on a generated
photo folder goes through the same check. Exports come from
:func:`cnnkit.models.inference_model`, tested on its own at the end.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pytest

import cnnkit
from cnnkit import models
from cnnkit.artifact import ModelMetadata, read_metadata, save_model
from cnnkit.config import TrainConfig
from cnnkit.errors import ConfigError
from cnnkit.exporting import export_model
from cnnkit.presets import PRESETS
from cnnkit.run import train
from photo_factory import write_clean

GRAPH_FORMATS = ("saved_model", "litert", "onnx")
PHOTO_RUN = "photo-run"  # the photo recipe trained by cnnkit.run.train on a generated folder
# Presets above 64 px train at 48 px to keep the file fast; "photo" keeps its real 128 px,
# so one photo model runs its real layers at their real size.
SMALL, REAL_SIZE = 48, "photo"
TOLERANCE = 1e-4

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                     reason="graph exports run on the TensorFlow backend")


def _input_shape(name: str) -> tuple[int, int, int]:
    height, width, channels = PRESETS[name].input_shape
    if name == REAL_SIZE or max(height, width) <= 64:
        return height, width, channels
    return SMALL, SMALL, channels


def _tiny_trained(name: str, folder: Path) -> tuple[Path, np.ndarray]:
    """The preset trained for two steps on random pixels, saved; and 16 other images to compare on."""
    preset = PRESETS[name]
    shape = _input_shape(name)
    keras.utils.set_random_seed(0)
    model = models.build_model(preset, input_shape=shape)
    model.compile(optimizer=models.make_optimizer(preset.optimizer), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, *shape), dtype=np.uint8)
    y = rng.integers(0, preset.num_classes, 16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # two steps
    for layer in model.layers:  # the check would miss a batch norm exported in training mode otherwise
        if isinstance(layer, keras.layers.BatchNormalization):
            assert np.abs(keras.ops.convert_to_numpy(layer.moving_mean)).max() > 0, layer.name
    metadata = ModelMetadata(class_names=[f"class{i}" for i in range(preset.num_classes)], input_shape=list(shape),
                             color_mode=preset.color_mode, preset=name, tta=dict(preset.tta))
    path = save_model(model, folder / f"{name}.keras", metadata)
    return path, rng.integers(0, 256, (16, *shape), dtype=np.uint8)


def _photo_run(folder: Path) -> tuple[Path, np.ndarray]:
    """The photo recipe through cnnkit's own training path; compared on its photos and on noise."""
    files = write_clean(folder / "photos")
    result = train(TrainConfig(preset="photo", data=str(folder / "photos"), epochs=1, image_size=32, seed=0),
                   folder / "run", verbose=0)
    photos = cnnkit.load(result.run_dir).load_files(files[::3])
    noise = np.random.default_rng(1).integers(0, 256, (4, *photos.shape[1:]), dtype=np.uint8)
    return result.run_dir, np.concatenate([photos, noise])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Callable[[str], tuple[Path, np.ndarray, np.ndarray]]:
    """``trained(case)``: a saved model, images, and Keras' probabilities for them; made once per module."""
    cache: dict[str, tuple[Path, np.ndarray, np.ndarray]] = {}

    def get(case: str) -> tuple[Path, np.ndarray, np.ndarray]:
        if case not in cache:
            folder = tmp_path_factory.mktemp(case)
            path, x = _photo_run(folder) if case == PHOTO_RUN else _tiny_trained(case, folder)
            cache[case] = path, x, cnnkit.load(path, tta=False).predict_proba(x)
        return cache[case]

    return get


def _runner(path: Path, fmt: str) -> Callable[[np.ndarray], np.ndarray]:
    """Call the exported file with its own runtime: TensorFlow, LiteRT or onnxruntime."""
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # the closure keeps it: its variables live in it
        return lambda x: loaded.serve(x).numpy()
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(str(path))

        def invoke(x: np.ndarray) -> np.ndarray:
            inp = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()

        return invoke
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("pixels", "tensor(uint8)")]  # raw pixels in
    return lambda x: session.run(None, {"pixels": x})[0]


@tensorflow_only
@pytest.mark.parametrize("fmt", GRAPH_FORMATS)
@pytest.mark.parametrize("case", [*PRESETS, PHOTO_RUN])
def test_graph_exports_match_keras(trained, tmp_path, case, fmt):
    model_path, x, expected = trained(case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = export_model(model_path, tmp_path / fmt, fmt)
    assert not [w for w in caught if "np.object" in str(w.message)]  # tf2onnx's NumPy 2 noise is silenced
    run = _runner(files[0], fmt)
    first, second = run(x), run(x)
    # Repeat calls agree exactly: augmentation and dropout stay out of the export.
    difference = {"from Keras": float(np.abs(first - expected).max()),
                  "between calls": float(np.abs(first - second).max())}
    assert difference["from Keras"] < TOLERANCE and difference["between calls"] == 0, difference
    metadata = read_metadata(model_path)
    assert json.loads(files[1].read_text())["input_shape"] == metadata["input_shape"]
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(files[0])).metadata_props}
        assert json.loads(props["cnnkit"])["class_names"] == metadata["class_names"]


def _augmented_model() -> keras.Sequential:
    """Every family :func:`inference_model` removes, around layers it keeps (CenterCrop is not random)."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input((20, 20, 3), dtype="uint8", name="pixels"),
        layers.RandomFlip("horizontal"), layers.RandomBrightness(0.2), layers.CenterCrop(16, 16),
        layers.RandomTranslation(0.1, 0.1), layers.Rescaling(1 / 255, name="rescale"),
        layers.Conv2D(4, 3), layers.SpatialDropout2D(0.3), layers.BatchNormalization(), layers.ReLU(),
        layers.GaussianNoise(0.1), layers.Flatten(), layers.AlphaDropout(0.1), layers.Dense(8, activation="relu"),
        layers.GaussianDropout(0.2), layers.Dropout(0.5), layers.Dense(3, activation="softmax"),
    ])


TRAINING_ONLY = (keras.layers.RandomFlip, keras.layers.RandomBrightness, keras.layers.RandomTranslation,
                 keras.layers.RandomRotation, keras.layers.RandomZoom, keras.layers.RandomContrast,
                 keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                 keras.layers.AlphaDropout)


@pytest.mark.backends
@pytest.mark.parametrize("build", [_augmented_model, lambda: models.build_model("photo", input_shape=(32, 32, 3))],
                         ids=["every-family", "photo"])
def test_inference_model_drops_training_only_layers(build):
    keras.utils.set_random_seed(0)
    model = build()
    for layer in model.layers:  # moving statistics away from 0 and 1: inference mode must use them
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.3, dtype="float32"))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 2.0, dtype="float32"))
    twin = models.inference_model(model)
    kept = [layer.name for layer in model.layers if not isinstance(layer, TRAINING_ONLY)]
    added = [layer for layer in twin.layers[1:] if layer.name not in kept]
    assert [layer.name for layer in twin.layers[1:] if layer.name in kept] == kept
    # The one stand-in: an exact cast where Keras' image layers turned uint8 pixels into float.
    assert [(type(layer), layer.scale, layer.offset) for layer in added] == [(keras.layers.Rescaling, 1.0, 0.0)]
    assert twin.inputs[0].name == "pixels" and twin.inputs[0].dtype == "uint8"
    for name in kept:  # copied, not shared: the original's graph (layer.output) is untouched
        assert twin.get_layer(name) is not model.get_layer(name)
        for ours, theirs in zip(twin.get_layer(name).weights, model.get_layer(name).weights):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))
    assert model.layers[-1].output.shape == twin.outputs[0].shape
    x = np.random.default_rng(0).integers(0, 256, (6, *model.input_shape[1:]), dtype=np.uint8)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    # Called with training unset, as model.export does: still inference (the original would augment).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(twin(x)), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(twin(x, training=False)), expected, rtol=0, atol=1e-6)


class _Doubler(keras.Model):
    def call(self, x):
        return x * 2


@pytest.mark.backends
@pytest.mark.parametrize("build, message", [
    (_Doubler, r"Expected a Sequential or functional Keras model\. Received: _Doubler .*subclassed"),
    (lambda: keras.Sequential([keras.layers.Dense(2)]),
     r"Expected a Sequential model that starts with keras\.Input\(\.\.\.\)\. Received: model 'sequential.*' without"),
], ids=["subclassed", "no-input"])
def test_inference_model_refuses_a_model_without_a_graph(build, message):
    with pytest.raises(ConfigError, match=message):
        models.inference_model(build())
