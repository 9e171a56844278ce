"""Batch prediction over files and folders: one row per file, bad files as error rows."""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest

from cnnkit.artifact import ModelMetadata
from cnnkit.batch import CSV_FIELDS, predict_paths
from cnnkit.errors import DataError
from cnnkit.images import encode_png
from cnnkit.models import build_model
from cnnkit.predictor import Predictor


@pytest.fixture(scope="module")
def predictor():
    keras.utils.set_random_seed(0)
    model = build_model("article-001")  # untrained is fine: we compare paths, not accuracy
    return Predictor(model, ModelMetadata(class_names=[str(i) for i in range(10)], input_shape=[28, 28, 1],
                                          color_mode="grayscale"))


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "photos" / "nested").mkdir(parents=True)
    for i in range(5):
        (tmp_path / "photos" / f"d{i}.png").write_bytes(encode_png(rng.integers(0, 256, (28, 28), dtype=np.uint8)))
    (tmp_path / "photos" / "nested" / "big.png").write_bytes(encode_png(rng.integers(0, 256, (56, 40), dtype=np.uint8)))
    (tmp_path / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "photos" / "notes.txt").write_text("not an image, not picked up from a folder")
    return tmp_path / "photos"


def test_one_row_per_file_and_errors_as_rows(predictor, folder, tmp_path):
    out = tmp_path / "predictions.csv"
    missing = tmp_path / "missing.png"
    result = predict_paths(predictor, [folder, missing], out=out, batch_size=3, progress=False)
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CSV_FIELDS
    assert len(rows) == 8 and result.failed == 2  # 6 images + broken.png + missing.png; notes.txt skipped
    errors = {r["path"]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {str(folder / "broken.png"), str(missing)}
    assert "Cannot decode image" in errors[str(folder / "broken.png")] and "not found" in errors[str(missing)]


def test_rows_match_single_file_prediction(predictor, folder):
    result = predict_paths(predictor, [folder], batch_size=4, progress=False)
    good = [f for f in result.files if f.prediction is not None]
    direct = predictor.predict_files([f.path for f in good], top_k=3)
    for item, expected in zip(good, direct):
        assert item.prediction.label == expected.label
        assert item.prediction.probability == pytest.approx(expected.probability, abs=1e-6)


def test_empty_input_is_a_clear_error(predictor, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No image files found"):
        predict_paths(predictor, [tmp_path / "empty"], progress=False)


@pytest.mark.slow
def test_weather_batch_matches_the_server(tmp_path, real_weather):
    """Issue 4: batch prediction over the weather folder = /v1/predict for the same files."""
    from starlette.testclient import TestClient

    from cnnkit.server import ServerSettings, create_app

    keras.utils.set_random_seed(0)
    classes = ["cloudy", "rain", "shine", "sunrise"]
    predictor = Predictor(build_model("photo", num_classes=4),
                          ModelMetadata(class_names=classes, input_shape=[96, 96, 3], color_mode="rgb"))
    result = predict_paths(predictor, [real_weather], out=tmp_path / "weather.csv", progress=False)
    files = sorted(p for p in real_weather.iterdir() if p.is_file())
    assert [f.path for f in result.files] == files and result.failed == 0  # one row per file
    with TestClient(create_app(predictor, ServerSettings(max_body_mb=20))) as client:
        while client.get("/readyz").status_code != 200:
            pass
        for item in result.files[::10]:
            answer = client.post("/v1/predict", files={"file": (item.path.name, item.path.read_bytes())}).json()
            top = answer["predictions"][0]
            assert top["label"] == item.prediction.label, item.path
            assert top["probability"] == pytest.approx(item.prediction.probability, abs=1e-5)
