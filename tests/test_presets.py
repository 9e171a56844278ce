"""Every preset through the same checks: shape, parameter count, raw-uint8 input, preprocessing inside."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from cnnkit.errors import ConfigError
from cnnkit.models import build_model, make_optimizer
from cnnkit.presets import PRESETS, get_preset

pytestmark = pytest.mark.backends

# The parameter totals SEEDS.md computed from the articles' layer shapes.
SEEDS_PARAMS = {"article-000": 203_434, "article-001": 47_410, "article-002": 484_714, "article-004": 1_199_882}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_builds_with_declared_parameter_count(name):
    preset = PRESETS[name]
    model = build_model(preset)
    assert model.count_params() == preset.params
    assert preset.description and preset.params > 0
    assert model.inputs[0].dtype == "uint8"
    assert tuple(model.inputs[0].shape[1:]) == preset.input_shape
    assert model.outputs[0].shape[-1] == preset.num_classes


@pytest.mark.parametrize("name,params", sorted(SEEDS_PARAMS.items()))
def test_article_parameter_counts_match_seeds(name, params):
    assert build_model(name).count_params() == params


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preprocessing_lives_in_the_model(name):
    preset = PRESETS[name]
    model = build_model(preset)
    names = [layer.name for layer in model.layers]
    assert "rescale" in names
    # Only augmentation (identity at inference) may come before the scaling.
    assert all(type(layer).__name__.startswith("Random") for layer in model.layers[:names.index("rescale")])
    # Raw 0..255 pixels in, probabilities out; the model scales them itself.
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, *preset.input_shape), dtype=np.uint8)
    probs = keras.ops.convert_to_numpy(model(pixels, training=False))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    scaled = keras.ops.convert_to_numpy(model.get_layer("rescale")(pixels))
    assert scaled.max() <= 1.0 and scaled.min() >= 0.0


def test_article_004_pins_adadelta_learning_rate_one():
    optimizer = make_optimizer(get_preset("article-004").optimizer)
    assert isinstance(optimizer, keras.optimizers.Adadelta)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(1.0)
    assert optimizer.rho == pytest.approx(0.95)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_hyperparameter_is_pinned(name):
    preset = PRESETS[name]
    assert "learning_rate" in preset.optimizer and preset.batch_size and preset.epochs


def test_head_follows_the_number_of_classes():
    model = build_model("article-003", num_classes=7)
    assert model.outputs[0].shape[-1] == 7


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match=r"Unknown preset\. Expected one of: article-000.*Received: preset='vgg'"):
        get_preset("vgg")


def test_bad_input_shape_is_refused():
    with pytest.raises(ConfigError, match=r"1 or 3 channels\. Received: input_shape=\(28, 28, 2\)"):
        build_model("fast", input_shape=(28, 28, 2))
