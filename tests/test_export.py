"""Graph exports answer as Keras does: a photo run trained through cnnkit, and the inference twin they are made from.

Every preset's exports are checked by helpers.check_preset (tests/test_presets.py); here a photo
model trained by ``cnnkit.training.run.train`` on a generated photo folder goes through the same
export check, on its own photos, and :func:`cnnkit.models.inference_model` is tested on its own.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cnnkit
from cnnkit import models
from cnnkit.errors import ConfigError
from cnnkit.training.config import TrainConfig
from cnnkit.training.run import train

from helpers import check_export
from photo_factory import write_clean

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                     reason="graph exports run on the TensorFlow backend")


@tensorflow_only
def test_a_photo_run_exports_agree_with_keras(tmp_path):
    files = write_clean(tmp_path / "photos")
    result = train(TrainConfig(recipe="photo", data=str(tmp_path / "photos"), epochs=1, image_size=32, seed=0),
                   tmp_path / "run", verbose=0)
    photos = cnnkit.load(result.run_dir).load_files(files[::3])
    noise = np.random.default_rng(1).integers(0, 256, (4, *photos.shape[1:]), dtype=np.uint8)
    check_export(result.run_dir, np.concatenate([photos, noise]), tmp_path / "exports")


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
