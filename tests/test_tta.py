"""Test-time augmentation: the views, the averaging, and that every path that predicts applies it."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from cnnkit.artifact import ModelMetadata, load_model, save_model
from cnnkit.engines import with_tta
from cnnkit.errors import ConfigError
from cnnkit.predictor import Predictor
from cnnkit.presets import get_preset
from cnnkit.training.config import TrainConfig
from cnnkit.training.run import train
from cnnkit.tta import check_spec, num_views, views

from helpers import MNIST_SUBSET, fake_engine

pytestmark = pytest.mark.backends  # also run on JAX: the server's padded call is another code path


def dot(y: int, x: int, size: int = 6) -> np.ndarray:
    image = np.zeros((1, size, size, 1), np.uint8)
    image[0, y, x, 0] = 255
    return image


def test_views_move_the_image_one_pixel_each_way_originals_first():
    out = views(dot(2, 3), {"shift": 1})
    assert out.shape == (5, 6, 6, 1) and out.dtype == np.uint8
    where = [tuple(int(v) for v in np.argwhere(view[..., 0] == 255)[0]) for view in out]
    assert where == [(2, 3), (3, 3), (1, 3), (2, 4), (2, 2)]  # itself, down, up, right, left


def test_flip_adds_the_left_right_mirror_after_the_shifts():
    out = views(dot(2, 1), {"shift": 1, "flip": True})
    assert out.shape == (6, 6, 6, 1) and num_views({"shift": 1, "flip": True}) == 6
    assert tuple(int(v) for v in np.argwhere(out[5, ..., 0] == 255)[0]) == (2, 4)  # column 1 of 6 mirrored
    assert num_views({"flip": True}) == 2 and (views(dot(0, 0), {"flip": True})[1, 0, 5, 0] == 255)


def test_uncovered_border_is_filled_from_the_edge_not_with_black():
    image = np.full((1, 4, 4, 1), 200, np.uint8)
    image[0, 0, :, 0] = 90  # top row
    down = views(image, {"shift": 2})[1]
    assert (down[:2, :, 0] == 90).all() and (down[2:, :, 0] == [[90] * 4, [200] * 4]).all()


def test_no_tta_is_the_identity():
    image = dot(1, 1)
    assert views(image, {}) is image
    engine = fake_engine(lambda x: x.reshape(len(x), -1)[:, :3].astype(np.float32), (8, 8, 1))
    assert with_tta(engine, {}) is engine and num_views({}) == 1


def test_averaged_returns_the_mean_over_views_per_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
    weights = rng.normal(size=(64, 4)).astype(np.float32)

    def call(x):  # any deterministic function of the pixels stands in for a model here
        logits = x.reshape(len(x), 64).astype(np.float32) @ weights / 255
        return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)

    averaged = with_tta(fake_engine(call, (8, 8, 1)), {"shift": 1})
    expected = np.mean([call(v) for v in np.split(views(images, {"shift": 1}), 5)], axis=0)
    np.testing.assert_allclose(averaged(images), expected, rtol=1e-6)
    assert averaged(images[:0]).shape == (0, 4)


@pytest.mark.parametrize(("spec", "message"), [
    ({"rotate": 5}, r"Unknown key\(s\) \['rotate'\] in tta"),
    ({"shift": -1}, "shift=-1"),
    ({"shift": 1.5}, "shift=1.5"),
    ({"shift": True}, "shift=True"),
    ({"flip": 1}, "flip=1"),
])
def test_bad_specs_say_what_was_received(spec, message):
    with pytest.raises(ConfigError, match=message):
        check_spec(spec)


def test_metadata_carries_tta_and_old_files_mean_none(tmp_path):
    meta = ModelMetadata(class_names=["a", "b"], input_shape=[6, 6, 1], color_mode="grayscale", tta={"shift": 1})
    again = ModelMetadata.from_dict(json.loads(json.dumps(meta.to_dict())), "x")
    assert again.tta == {"shift": 1}
    old = {k: v for k, v in meta.to_dict().items() if k != "tta"}  # written before cnnkit had TTA
    assert ModelMetadata.from_dict(old, "old.keras").tta == {}
    with pytest.raises(ConfigError, match="tta of bad.keras"):
        ModelMetadata.from_dict({**old, "tta": {"shift": "one"}}, "bad.keras")


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)  # position-sensitive: a shifted view gives other numbers
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_predictor_and_server_call_average_the_same_views(tmp_path):
    path = save_model(small_model(), tmp_path / "m.keras", ModelMetadata(
        class_names=["a", "b", "c"], input_shape=[28, 28, 1], color_mode="grayscale", tta={"shift": 1}))
    pixels = np.random.default_rng(1).integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
    with_tta = Predictor.from_artifact(path, batch_size=4)  # batches of 4 and 3: each averaged on its own
    one_view = Predictor.from_artifact(path, tta=False)
    assert with_tta.tta == {"shift": 1} and one_view.tta == {}
    expected = np.mean([one_view.predict_proba(v) for v in np.split(views(pixels, {"shift": 1}), 5)], axis=0)
    np.testing.assert_allclose(with_tta.predict_proba(pixels), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(one_view.predict_proba(pixels) - expected).max() > 1e-4  # TTA changed the numbers
    np.testing.assert_allclose(with_tta.engine(pixels), expected, rtol=1e-4, atol=1e-5)  # what the server calls


def test_a_recipe_with_tta_trains_saves_and_reports_both_numbers(tmp_path):
    preset = dataclasses.replace(get_preset("fast"), name="fast-tta-test", tta={"shift": 1})
    result = train(TrainConfig(recipe=preset, data=str(MNIST_SUBSET), epochs=1, seed=0, train_limit=1000,
                               test_limit=200), tmp_path / "run", verbose=0)
    metrics = result.metrics
    assert metrics["tta"] == {"shift": 1}
    assert 0.0 < metrics["test_accuracy_single_view"] <= 1.0
    assert load_model(result.run_dir)[1].tta == {"shift": 1}
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert "one view, no TTA" in (result.run_dir / "report.html").read_text()


def test_the_articles_json_h5_pair_keeps_tta_and_load_can_turn_it_off(tmp_path):
    import cnnkit
    from cnnkit.exporting import export_model

    path = save_model(small_model(), tmp_path / "m.keras", ModelMetadata(
        class_names=["a", "b", "c"], input_shape=[28, 28, 1], color_mode="grayscale", tta={"shift": 1}))
    export_model(path, tmp_path / "export", "json-h5")
    assert cnnkit.load(tmp_path / "export" / "model.json").tta == {"shift": 1}
    assert cnnkit.load(tmp_path / "export" / "model.json", tta=False).tta == {}


def test_predict_command_applies_tta_unless_told_not_to(tmp_path, capsys):
    import csv

    from cnnkit.cli import main
    from cnnkit.images import encode_png

    path = save_model(small_model(), tmp_path / "m.keras", ModelMetadata(
        class_names=["a", "b", "c"], input_shape=[28, 28, 1], color_mode="grayscale", tta={"shift": 1}))
    png = tmp_path / "x.png"
    png.write_bytes(encode_png(np.random.default_rng(2).integers(0, 256, (28, 28, 1), dtype=np.uint8)))
    written = {}
    for flag in ([], ["--no-tta"]):
        out = tmp_path / f"p{len(flag)}.csv"
        assert main(["predict", str(path), str(png), "--out", str(out), *flag]) == 0
        with out.open() as handle:
            written[bool(flag)] = float(next(csv.DictReader(handle))["probability"])
    for no_tta, probability in written.items():
        expected = Predictor.from_artifact(path, tta=not no_tta).predict_files([png])[0].probability
        assert abs(probability - expected) < 1e-5
    assert abs(written[True] - written[False]) > 1e-5  # the flag changed what was computed


def test_serve_has_the_same_switch():
    import argparse

    from cnnkit.server.cli import add_serve_arguments

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert parser.parse_args(["m.keras", "--no-tta"]).no_tta and not parser.parse_args(["m.keras"]).no_tta
