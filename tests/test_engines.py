"""One way to call a model: every engine gives Keras' numbers, and every caller goes through the engine.

The Predictor (evaluation, ``cnnkit predict``), batch prediction (local and on Ray) and the server
all reach the model through :class:`cnnkit.engines.Engine`; test-time augmentation is applied once,
around it. The same images get the same probabilities from each, with and without TTA.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit._backend import keras
from cnnkit.artifact import ModelMetadata
from cnnkit.engines import ENGINES, Engine, build_engine
from cnnkit.errors import ConfigError
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
