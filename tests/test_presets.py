"""Every preset through the same check (helpers.check_preset), and what the articles' recipes pin."""

from __future__ import annotations

import keras
import pytest

from cnnkit.errors import ConfigError
from cnnkit.models import build_model, make_optimizer
from cnnkit.presets import PRESETS, get_preset

from helpers import check_preset

pytestmark = pytest.mark.backends

# The parameter totals SEEDS.md computed from the articles' layer shapes.
SEEDS_PARAMS = {"article-000": 203_434, "article-001": 47_410, "article-002": 484_714, "article-004": 1_199_882}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset(name, tmp_path):
    """The shared check (helpers.check_preset): build, parameter count, preprocessing inside, then on the
    default backend a training step, .keras round trip, inference and float32 twins, every graph export.

    On the other backends (`make test-jax`) only the build: their training is covered by the core tests,
    and a training step of every preset there cost a minute of the suite.
    """
    # A backbone's deep check (a training step, twins and exports of a 6-million-parameter network) takes a
    # minute and a half: under `make test-heavy`; its ONNX round trip runs in tests/test_backbones.py.
    deep = keras.backend.backend() == "tensorflow" and not PRESETS[name].backbone
    check_preset(name, tmp_path, deep=deep)


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(name for name, preset in PRESETS.items() if preset.backbone))
def test_backbone_preset_deep(name, tmp_path):
    check_preset(name, tmp_path, deep=True)


@pytest.mark.parametrize("name,params", sorted(SEEDS_PARAMS.items()))
def test_article_parameter_counts_match_seeds(name, params):
    assert build_model(name).count_params() == params


def test_article_004_pins_adadelta_learning_rate_one():
    optimizer = make_optimizer(get_preset("article-004").optimizer)
    assert isinstance(optimizer, keras.optimizers.Adadelta)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(1.0)
    assert optimizer.rho == pytest.approx(0.95)


def test_head_follows_the_number_of_classes():
    model = build_model("article-003", num_classes=7)
    assert model.outputs[0].shape[-1] == 7


def test_unknown_recipe_lists_the_choices_and_the_nearest():
    with pytest.raises(ConfigError, match=r"Unknown recipe\. Expected one of: article-000.*"
                                          r"Received: recipe='vgg'\. See every recipe"):
        get_preset("vgg")
    with pytest.raises(ConfigError, match=r"Received: recipe='fsat'\. Did you mean 'fast'\?") as error:
        build_model("fsat")
    assert error.value.params == ("recipe",)


def test_bad_input_shape_is_refused():
    with pytest.raises(ConfigError, match=r"1 or 3 channels\. Received: input_shape=\(28, 28, 2\)"):
        build_model("fast", input_shape=(28, 28, 2))
