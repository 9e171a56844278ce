"""cnnkit.explain.table (per-layer arithmetic) and cnnkit.explain.conv (the NumPy reference)."""

from __future__ import annotations

import io
import json

import keras
import numpy as np
import pytest

from cnnkit.artifact import ModelMetadata, save_model
from cnnkit.errors import CnnkitError, ConfigError
from cnnkit.explain import rules
from cnnkit.explain.conv import (
    EXAMPLE_INPUT,
    EXAMPLE_KERNEL,
    avg_pool,
    conv_demo,
    cross_correlate,
    max_pool,
    output_size,
    walkthrough,
)
from cnnkit.explain.table import explain, explain_model
from cnnkit.models import build_model
from cnnkit.models.preprocessing import AUGMENTATIONS, build_preprocessing
from cnnkit.presets import PRESETS, Preset

# ---- conv.py: the NumPy reference ------------------------------------------------------------

def test_worked_example_of_article_002():
    assert cross_correlate(EXAMPLE_INPUT, EXAMPLE_KERNEL).tolist() == [[0, 12], [-8, 12]]
    assert cross_correlate(EXAMPLE_INPUT, EXAMPLE_KERNEL, padding="valid").tolist() == [[0, 12], [-8, 12]]


def test_padding_and_stride_examples():
    padded = cross_correlate(EXAMPLE_INPUT, EXAMPLE_KERNEL, padding=1)
    assert padded.tolist() == [[2, 14, 10, 12], [10, 0, 12, 24], [0, -8, 12, 38], [-1, 20, 32, 15]]
    assert cross_correlate(EXAMPLE_INPUT, EXAMPLE_KERNEL, padding=1, stride=2).tolist() == [[2, 10], [0, 12]]


@pytest.mark.parametrize(("n", "k", "p", "s", "expected"), [
    (4, 3, 0, 1, 2),    # n − k + 1
    (4, 3, 2, 1, 4),    # p = k − 1 keeps the size
    (4, 3, 2, 2, 2),
    (28, 3, 0, 2, 13),
    (28, 5, 4, 1, 28),
    (5, 2, 0, 2, 2),    # the last odd row is dropped
    (3, 3, 0, 1, 1),
])
def test_output_size(n, k, p, s, expected):
    assert output_size(n, k, p, s) == expected


def test_output_size_rejects_bad_input():
    with pytest.raises(ConfigError,
                       match=r"Expected the padded input to be at least as large .* Received: n=2, p=0, k=3"):
        output_size(2, 3, 0, 1)
    with pytest.raises(ConfigError, match=r"Expected s to be an integer >= 1\. Received: s=0\."):
        output_size(4, 3, 0, 0)
    with pytest.raises(ConfigError, match=r"Expected padding .* Received: padding='full'"):
        cross_correlate(EXAMPLE_INPUT, EXAMPLE_KERNEL, padding="full")
    with pytest.raises(ConfigError, match=r"Expected x to be a non-empty 2-D array .* Received: x with shape=\(4,\)"):
        cross_correlate([1, 2, 3, 4], EXAMPLE_KERNEL)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(7, 7), (8, 6)])
def test_cross_correlate_matches_keras(padding, stride, size):
    rng = np.random.default_rng(0)
    x = rng.normal(size=size).astype("float32")
    kernel = rng.normal(size=(3, 3)).astype("float32")
    ours = cross_correlate(x, kernel, stride=stride, padding=padding)
    theirs = keras.ops.conv(x[None, :, :, None], kernel[:, :, None, None], strides=stride, padding=padding)
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(theirs)[0, :, :, 0], rtol=1e-5, atol=1e-5)


def test_pooling_examples_pinned_and_match_keras():
    x = np.array(EXAMPLE_INPUT, dtype="float32")
    assert max_pool(x, 2).tolist() == [[3, 5], [1, 9]]
    assert avg_pool(x, 2).tolist() == [[1, 2.5], [-0.25, 3.25]]
    assert max_pool(x, 3, stride=1).tolist() == [[3, 5], [9, 9]]  # the article's 3×3 example
    batch = x[None, :, :, None]
    for ours, layer in [(max_pool(x, 2), keras.layers.MaxPooling2D(2)),
                        (avg_pool(x, 2), keras.layers.AveragePooling2D(2)),
                        (max_pool(x, 3, 1), keras.layers.MaxPooling2D(3, strides=1))]:
        np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(layer(batch))[0, :, :, 0])


def test_walkthrough_prints_each_product_and_sum():
    buf = io.StringIO()
    result = walkthrough(EXAMPLE_INPUT, EXAMPLE_KERNEL, stride=1, padding=0, out=buf)
    text = buf.getvalue()
    assert result.tolist() == [[0, 12], [-8, 12]]
    assert "out[0, 0] = 0×0 + 1×2 + 2×1 + 3×1 + 0×3 + (-1)×2 + (-2)×2 + 0×0 + 1×(-1) = 0" in text
    assert "out[1, 1] = 0×0 + (-1)×2 + 5×1 + 0×1 + 1×3 + 3×2 + 0×2 + 9×0 + 0×(-1) = 12" in text
    assert "Output size: 4 − 3 + 0 + 1 = 2" in text


def test_conv_demo_covers_the_article():
    text = conv_demo()
    assert "out[1, 0] = 3×0 + 0×2 + (-1)×1 + (-2)×1 + 0×3 + 1×2 + 1×2 + 0×0 + 9×(-1) = -8" in text
    assert "Padded input:" in text and "⌊(4 − 3 + 2 + 2)/2⌋ = 2" in text
    assert "out[1, 1] = max(1, 3, 9, 0) = 9" in text
    assert "out[1, 0] = mean((-2), 0, 1, 0) = -0.25" in text
    assert "not flipped" in text


# ---- table.py: per-layer arithmetic --------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_explains_and_totals_match_keras(name):
    model = build_model(name)
    result = explain_model(model)  # raises on any shape or parameter mismatch
    assert result.total_params == model.count_params() == PRESETS[name].params
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert result.trainable_params == trainable
    names = [r.name for r in result.rows]
    expected = [layer.name for layer in model.layers]
    if PRESETS[name].backbone:  # the backbone is one row per stage (tests/test_backbones.py)
        inner = [layer.name for layer in model.layers if isinstance(layer, keras.Model)][0]
        names = [n for n in names if not n.startswith(f"{inner} stage ")]
        expected.remove(inner)
    assert names == expected
    assert result.total_flops > 0 and result.activation_bytes > 0
    json.dumps(result.to_dict())  # serialisable


@pytest.mark.parametrize("kind", sorted(AUGMENTATIONS))
def test_every_augmentation_a_recipe_can_ask_for_explains(kind):
    """A 15-minute auto run once ended in an error here: its winner erased patches, and the report's table did
    not know RandomErasing. Every augmentation in the registry is identity at inference, and explained as one."""
    strength = "horizontal" if kind == "flip" else 0.2
    model = keras.Sequential([keras.Input((28, 28, 1)),
                              *build_preprocessing({"augment": {kind: strength}, "rescale": 1 / 255}),
                              keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    result = explain_model(model)
    assert result.total_params == model.count_params()
    row = next(r for r in result.rows if r.name == model.layers[0].name)
    assert row.output_shape == (28, 28, 1) and row.params == 0


def test_every_candidate_of_the_search_explains():
    from cnnkit.training import candidates

    values = {**candidates.SMALL, "dropout": 0.25, "translation": 0.1, "flip": True, "erasing": 0.5, "depth": 2}
    preset = candidates.small_candidate(PRESETS["small"], values, (8, 8, 1), "small-auto-test")
    model = build_model(preset, input_shape=(8, 8, 1), num_classes=10)
    assert explain_model(model).total_params == model.count_params()


def test_article_002_table():
    result = explain("article-002")
    assert result.total_params == 484_714
    text = result.to_text()
    assert "Total: 484,714 parameters" in text
    for formula in ["(5·5·1 + 1)·32 = 832", "(5·5·32 + 1)·32 = 25,632", "(3·3·32 + 1)·64 = 18,496",
                    "(3·3·64 + 1)·64 = 36,928", "(3136 + 1)·128 = 401,536", "(128 + 1)·10 = 1,290",
                    "7·7·64 = 3136", "⌈28/1⌉ = 28", "⌊(28 − 2 + 0 + 2)/2⌋ = 14", "same (p=4)"]:
        assert formula in text
    conv = next(r for r in result.rows if r.type == "Conv2D")
    # 28·28·32 outputs, 25 multiply-adds each (2 FLOPs), plus a bias add and a ReLU per output.
    assert conv.flops == 28 * 28 * 32 * (2 * 25 + 2)
    assert conv.memory_bytes == 28 * 28 * 32 * 4


def test_valid_conv_formula_on_one_channel():
    row = explain("article-000").rows[1]  # rows[0] is the rescale layer
    assert (row.type, row.size_formula, row.param_formula) == ("Conv2D", "28 − 3 + 1 = 26", "(3·3·1 + 1)·64 = 640")


def _tiny(layers, input_shape=(28, 28, 1)) -> keras.Sequential:
    preset = Preset(name="tiny", description="test", params=0, input_shape=input_shape, num_classes=2,
                    layers=tuple(layers), preprocessing={})
    return build_model(preset)


def test_receptive_field_of_a_known_stack():
    model = _tiny([("Conv2D", {"filters": 2, "kernel_size": 3}),                # r 3, j 1
                   ("MaxPooling2D", {"pool_size": 2}),                         # r 4, j 2
                   ("Conv2D", {"filters": 2, "kernel_size": 3, "strides": 2}),  # r 8, j 4
                   ("Conv2D", {"filters": 2, "kernel_size": 3, "dilation_rate": 2}),  # k 5: r 24, j 4
                   ("Flatten", {})])
    rows = explain_model(model).rows
    assert [(r.receptive_field, r.jump) for r in rows[:4]] == [
        ((3, 3), (1, 1)), ((4, 4), (2, 2)), ((8, 8), (4, 4)), ((24, 24), (4, 4))]
    assert rows[2].size_formula == "⌊(13 − 3 + 0 + 2)/2⌋ = 6"
    assert rows[3].size_formula == "6 − 5 + 1 = 2 (k = 2·(3 − 1) + 1 = 5)"
    assert rows[4].receptive_field is None and rows[4].rf_text == "all"


def test_other_layer_types_and_no_bias():
    model = _tiny([("SeparableConv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}),
                   ("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2, "use_bias": False}),
                   ("Conv2D", {"filters": 4, "kernel_size": 1, "use_bias": False}),
                   ("BatchNormalization", {"center": False}),
                   ("Activation", {"activation": "relu"}),
                   ("SpatialDropout2D", {"rate": 0.1}),
                   ("AveragePooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}),
                   ("GlobalAveragePooling2D", {})], input_shape=(9, 9, 3))
    result = explain_model(model)
    texts = [r.param_formula for r in result.rows]
    assert texts[:4] == ["3·3·3 + 3·8 + 8 = 59", "3·3·8·2 = 144", "1·1·16·4 = 64", "3·4 = 12 (4 trainable)"]
    assert result.rows[6].size_formula == "⌈7/2⌉ = 4" and result.rows[6].padding == "same (p=2)"
    assert result.total_params == model.count_params()


def test_unsupported_layer_is_named():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                              keras.layers.UpSampling2D(name="grow")])
    with pytest.raises(ConfigError, match=r"Cannot explain layer 'grow': unsupported type\. Expected one of .*"
                                          r"Received: type='UpSampling2D'\."):
        explain_model(model)


def test_unsupported_configuration_is_named():
    model = keras.Sequential([keras.Input((8, 8, 4)), keras.layers.Conv2D(4, 3, groups=2, name="grouped")])
    with pytest.raises(ConfigError,
                       match=r"'grouped' \(Conv2D\): unsupported groups\. Expected 1\. Received: groups=2\."):
        explain_model(model)


def test_shape_mismatch_names_the_layer(monkeypatch):
    monkeypatch.setitem(rules.RULES, "Flatten", lambda layer, shape: rules.Step(out=(1,), sees_all=True))
    with pytest.raises(CnnkitError, match=r"output shape of 'flatten.*' \(Flatten\) disagrees with Keras'\. "
                                          r"Expected \(3136,\)\. Received: computed=\(1,\)\."):
        explain("article-002")


def test_explain_rejects_unknown_target(tmp_path):
    with pytest.raises(ConfigError, match=r"Expected a preset name \(article-000.*Received: target='nope'\."):
        explain("nope")


def test_explain_loads_a_saved_model(tmp_path):
    # A saved untrained model is enough: the table reads the architecture, not the weights.
    meta = ModelMetadata(class_names=[str(i) for i in range(10)], input_shape=[28, 28, 1], color_mode="grayscale")
    path = save_model(build_model("fast"), tmp_path / "fast.keras", meta)
    loaded, built = explain(str(path)), explain("fast")
    assert loaded.total_params == PRESETS["fast"].params
    assert [r.param_formula for r in loaded.rows] == [r.param_formula for r in built.rows]


def test_renderings():
    result = explain_model(_tiny([("Conv2D", {"filters": 2, "kernel_size": 3, "name": "<b>&"}), ("Flatten", {})],
                                 input_shape=(6, 6, 1)))
    text = result.to_text()
    lines = text.splitlines()
    assert lines[0] == "tiny: input 6×6×1"
    assert len({len(line) for line in lines[1:3]}) == 1  # the header is as wide as its rule
    assert "Total: 86 parameters (86 trainable, 0 non-trainable)" in text
    page = result.to_html()
    assert page.startswith('<table class="explain">') and page.endswith("</table>")
    assert "&lt;b&gt;&amp;" in page and "<b>" not in page
    assert "http" not in page and "<script" not in page
    data = result.to_dict()
    assert data["totals"]["params"] == 86 and data["rows"][0]["param_formula"] == "(3·3·1 + 1)·2 = 20"


def test_cropping_shrinks_the_map_and_costs_nothing():
    result = explain_model(_tiny([("Cropping2D", {"cropping": ((2, 1), (0, 3))}),
                                  ("Conv2D", {"filters": 2, "kernel_size": 3})], input_shape=(10, 9, 1)))
    crop, conv = (next(r for r in result.rows if r.type == kind) for kind in ("Cropping2D", "Conv2D"))
    assert crop.output_shape == (7, 6, 1) and crop.size_formula == "10 − 2 − 1 = 7; 9 − 0 − 3 = 6"
    assert crop.params == 0 and crop.flops == 0 and crop.receptive_field == (1, 1)
    assert conv.output_shape == (5, 4, 2) and conv.receptive_field == (3, 3)
    fast = explain("fast").rows
    assert any(r.type == "Cropping2D" and r.size_formula == "28 − 2 − 2 = 24" for r in fast)
