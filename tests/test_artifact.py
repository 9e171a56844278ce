"""The saved model: metadata travels with it, exports round-trip, unsafe files are refused."""

from __future__ import annotations

import json
import zipfile

import h5py
import keras
import numpy as np
import pytest

import cnnkit
from cnnkit import artifact
from cnnkit.artifact import ModelMetadata, load_model, save_model
from cnnkit.errors import ArtifactError
from cnnkit.exporting import export_model, import_json_h5

pytestmark = pytest.mark.backends


def _meta(classes=10):
    return ModelMetadata(class_names=[str(i) for i in range(classes)], input_shape=[28, 28, 1], color_mode="grayscale")


def test_run_model_carries_its_metadata(trained_run):
    meta = artifact.read_metadata(trained_run.run_dir)
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["input_shape"] == [28, 28, 1]
    assert meta["color_mode"] == "grayscale"
    assert meta["recipe"] == "fast"
    # Models saved before the word was "recipe" carry it as "preset"; they load the same.
    older = {**{k: v for k, v in meta.items() if k != "recipe"}, "preset": "fast"}
    assert ModelMetadata.from_dict(older, "an older model").recipe == "fast"


def test_model_file_loads_in_plain_keras(trained_run, mnist_subset):
    # No cnnkit code is needed to use the model: preprocessing is made of Keras layers.
    plain = keras.saving.load_model(trained_run.run_dir / artifact.MODEL, safe_mode=True)
    ours = cnnkit.load(trained_run.run_dir)
    x = mnist_subset.x_test[:16]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)), ours.predict_proba(x), atol=1e-6)


def test_json_h5_export_round_trips(trained_run, mnist_subset, tmp_path):
    files = export_model(trained_run.run_dir, tmp_path / "export")
    assert [f.name for f in files] == ["model.json", "model.weights.h5"]
    # The JSON is Keras' own architecture format, as the articles write it.
    assert json.loads(files[0].read_text())["class_name"] == "Sequential"
    reloaded = cnnkit.load(files[0])
    original = cnnkit.load(trained_run.run_dir)
    assert reloaded.class_names == original.class_names
    x = mnist_subset.x_test[:32]
    np.testing.assert_allclose(reloaded.predict_proba(x), original.predict_proba(x), atol=1e-6)


def test_weights_without_metadata_are_refused(trained_run, tmp_path):
    json_path, weights = export_model(trained_run.run_dir, tmp_path)
    with h5py.File(weights, "a") as handle:
        del handle.attrs[artifact.H5_METADATA_ATTR]
    with pytest.raises(ArtifactError, match="carries no cnnkit metadata"):
        import_json_h5(json_path)


def test_weights_that_do_not_fit_the_architecture_are_refused(trained_run, tmp_path):
    json_path, _ = export_model(trained_run.run_dir, tmp_path)
    other = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    other.save_weights(tmp_path / "other.weights.h5")
    with h5py.File(tmp_path / "other.weights.h5", "a") as handle:
        handle.attrs[artifact.H5_METADATA_ATTR] = json.dumps(_meta().to_dict())
    with pytest.raises(ArtifactError, match="do not fit the architecture"):
        import_json_h5(json_path, tmp_path / "other.weights.h5")


def test_lambda_layer_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda t: t * 2.0),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    path = save_model(model, tmp_path / "lambda.keras", _meta())
    with pytest.raises(ArtifactError, match="contains a Lambda layer"):
        load_model(path)
    (tmp_path / "model.json").write_text(model.to_json())
    with pytest.raises(ArtifactError, match="contains a Lambda layer"):
        cnnkit.load(tmp_path / "model.json")


def test_foreign_module_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    config = json.loads(model.to_json())
    config["config"]["layers"][-1]["module"] = "os"
    (tmp_path / "model.json").write_text(json.dumps(config))
    model.save_weights(tmp_path / "model.weights.h5")
    with pytest.raises(ArtifactError, match="unsafe deserialization"):
        cnnkit.load(tmp_path / "model.json")


def test_truncated_model_file_is_refused(trained_run, tmp_path):
    data = (trained_run.run_dir / artifact.MODEL).read_bytes()
    broken = tmp_path / "broken.keras"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="not a readable .keras model file"):
        load_model(broken)


def test_model_without_metadata_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "plain.keras")
    with pytest.raises(ArtifactError, match="carries no cnnkit metadata"):
        load_model(tmp_path / "plain.keras")


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(ArtifactError, match=r"Model not found\. Received: .*nowhere"):
        load_model(tmp_path / "nowhere")


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    save_model(model, tmp_path / "m.keras", _meta(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        assert artifact.METADATA_MEMBER in archive.namelist()
