"""One way to call a model: every engine gives Keras' numbers, and every caller goes through the engine.

The Predictor (evaluation, ``cnnkit predict``), batch prediction (local and on Ray) and the server
all reach the model through :class:`cnnkit.engines.Engine`; test-time augmentation is applied once,
around it. The same images get the same probabilities from each, with and without TTA.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cnnkit
from cnnkit._backend import keras
from cnnkit.artifact import ModelMetadata, save_model
from cnnkit.batch import predict_paths
from cnnkit.engines import ENGINES, Engine, build_engine
from cnnkit.errors import ConfigError
from cnnkit.images import encode_png
from cnnkit.models import build_model
from cnnkit.predictor import Predictor

from helpers import check_engine


@pytest.mark.backends
@pytest.mark.parametrize("kind", sorted(ENGINES))
@pytest.mark.parametrize("preset,shape", [("fast", (28, 28, 1)), ("photo", (32, 32, 3))])
def test_engine(kind, preset, shape):
    """The shared check (helpers.check_engine) over every engine, on a grey and on an augmented colour model."""
    model = build_model(preset, input_shape=shape, num_classes=4)
    x = np.random.default_rng(0).integers(0, 256, (5, *shape), dtype=np.uint8)
    if kind == "onnxruntime" and keras.backend.backend() != "tensorflow":  # the conversion is TensorFlow's
        with pytest.raises(ConfigError, match="runs on the TensorFlow backend"):
            ENGINES[kind](model)
        return
    check_engine(ENGINES[kind], model, x)


@pytest.mark.backends
def test_auto_measures_the_engines_and_keeps_the_fastest():
    from cnnkit.engines.choice import choose_engine
    from cnnkit.server.cli import ENGINE_CHOICES

    model = build_model("fast", num_classes=3)
    choice = choose_engine(model, "auto", batch_sizes=[1, 8])
    on_tf = keras.backend.backend() == "tensorflow"
    assert set(choice.measured) == ({"keras", "onnxruntime"} if on_tf else {"keras"})
    assert all(set(times) == {1, 8} and min(times.values()) > 0 for times in choice.measured.values())
    fastest = min(choice.measured, key=lambda name: sum(choice.measured[name].values()))
    assert choice.engine.name == fastest and f"Engine: {fastest}, the fastest measured here" in choice.line()
    assert on_tf or "onnxruntime left out (Converting to ONNX runs on the TensorFlow backend" in choice.line()
    described = choice.describe()
    assert described["chosen"] == "auto" and described["measured_ms"][fastest]["8"] > 0
    assert choose_engine(model, "keras").describe() == {"name": "keras", "chosen": "given"}
    assert ENGINE_CHOICES == ("auto", *sorted(ENGINES))  # the CLI's list, written out to keep Keras out of --help
    with pytest.raises(ConfigError, match=r"Expected one of \['auto', 'keras', 'onnxruntime'\]"):
        choose_engine(model, "tensorrt")


@pytest.mark.backends
def test_predictor_holds_one_engine_with_its_recipes_views():
    model = build_model("fast", num_classes=3)
    metadata = ModelMetadata(class_names=["a", "b", "c"], input_shape=[28, 28, 1], color_mode="grayscale",
                             tta={"shift": 1})
    assert isinstance(Predictor(model, metadata).engine, Engine)
    assert Predictor(model, metadata).engine.describe() == {"name": "keras", "tta": {"shift": 1}}
    assert Predictor(model, metadata, tta=False).engine.describe() == {"name": "keras"}


def test_unknown_engine_names_the_choices():
    with pytest.raises(ConfigError, match=r"Unknown engine\. Expected one of \['keras', 'onnxruntime'\]\. "
                                          r"Received: engine='tflite'"):
        build_engine(build_model("fast"), kind="tflite")


def _probabilities(rows, class_names):
    """Full probability vectors back from batch rows (top-k = every class)."""
    return np.array([[dict(r.prediction.top_k)[c] for c in class_names] for r in rows])


def test_predictor_batch_ray_and_server_give_the_same_probabilities(tmp_path, local_ray):
    for tta in (True, False):  # one Ray session for both
        _same_probabilities_everywhere(tta, tmp_path / str(tta))


def _same_probabilities_everywhere(tta: bool, tmp_path) -> None:
    from cnnkit.batch_ray import predict_paths_ray
    from cnnkit.server import ServerSettings, create_app

    from helpers import wait_ready

    classes = ["a", "b", "c", "d"]
    tmp_path.mkdir()
    path = save_model(build_model("fast", num_classes=4), tmp_path / "m.keras", ModelMetadata(
        class_names=classes, input_shape=[28, 28, 1], color_mode="grayscale", tta={"shift": 1}))
    pixels = np.random.default_rng(3).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    files = []
    for i, image in enumerate(pixels):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(encode_png(image))
    predictor = cnnkit.load(path, tta=tta)
    assert bool(predictor.tta) is tta
    direct = predictor.predict_proba(pixels)
    local = _probabilities(predict_paths(predictor, files, top_k=4, progress=False).files, classes)
    ray = _probabilities(predict_paths_ray(path, files, top_k=4, progress=False, tta=tta).files, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's TestClient prefers httpx2
        from starlette.testclient import TestClient

        with TestClient(create_app(predictor, ServerSettings(model_name="m"))) as client:
            wait_ready(client)
            answer = client.post("/v2/models/m/infer", json={"inputs": [
                {"name": "pixels", "shape": list(pixels.shape), "datatype": "UINT8", "data": pixels.ravel().tolist()}]})
    served = np.array(answer.json()["outputs"][0]["data"]).reshape(6, 4)
    for got in (local, ray, served):
        np.testing.assert_allclose(got, direct, rtol=0, atol=1e-6)
    other = cnnkit.load(path, tta=not tta).predict_proba(pixels)
    assert np.abs(other - direct).max() > 1e-4  # TTA really changes the numbers: the check can fail
