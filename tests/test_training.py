"""Training runs: the run folder, the honest split, resume after SIGKILL, seeds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cnnkit import artifact
from cnnkit.errors import ArtifactError, ConfigError
from cnnkit.fileio import TMP_MARKER
from cnnkit.models import build_model
from cnnkit.run import train
from cnnkit.config import TrainConfig
from cnnkit.training import split_dataset

from conftest import MNIST_SUBSET

RUN_FILES = ["config.json", "confusion_matrix.csv", "confusion_matrix.png", "curves.png", "gradcam.png", "history.csv",
             "history.json", "metrics.json", "model.keras", "per_class.csv", "predictions.png", "reliability.png",
             "report.html", "samples.png", "top_losses.png"]


@pytest.mark.backends
def test_run_folder_holds_everything(trained_run):
    names = sorted(p.name for p in trained_run.run_dir.iterdir())
    assert names == RUN_FILES  # no checkpoints left once finished, no temporaries
    metrics = json.loads((trained_run.run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["test_samples"] == 600
    # A real (tiny) model learns: 3 epochs on 2,700 digits is far above chance (10 %).
    assert metrics["test_accuracy"] > 0.8
    history = json.loads((trained_run.run_dir / "history.json").read_text())
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(history)
    assert len(history["val_accuracy"]) == 3
    config = json.loads((trained_run.run_dir / "config.json").read_text())
    assert config["train"]["batch_size"] == 256 and config["preset"]["name"] == "fast"


def test_validation_comes_from_the_training_set(mnist_subset):
    config = TrainConfig(data=str(MNIST_SUBSET), val_fraction=0.1, seed=3).resolve()
    split = split_dataset(mnist_subset, config)
    assert len(split.x_train) + len(split.x_val) == len(mnist_subset.x_train)
    # Stratified: every class keeps its share in the validation split.
    train_share = np.bincount(mnist_subset.y_train) / len(mnist_subset.y_train)
    val_share = np.bincount(split.y_val, minlength=10) / len(split.y_val)
    assert np.abs(train_share - val_share).max() < 0.01
    # No test image is used for validation.
    test_rows = {row.tobytes() for row in mnist_subset.x_test}
    assert not any(row.tobytes() in test_rows for row in split.x_val)


def test_same_seed_same_split_and_weights(mnist_subset):
    config = TrainConfig(data=str(MNIST_SUBSET), seed=7).resolve()
    a, b = split_dataset(mnist_subset, config), split_dataset(mnist_subset, config)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    import keras

    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        weights.append(build_model("article-001").get_weights())
    for w1, w2 in zip(*weights):
        np.testing.assert_array_equal(w1, w2)


def test_existing_run_folder_is_not_overwritten(trained_run):
    with pytest.raises(ConfigError, match=r"Run folder already exists.*--resume.*--overwrite"):
        train(TrainConfig(data=str(MNIST_SUBSET), epochs=1), trained_run.run_dir)


def test_finished_run_cannot_resume(trained_run):
    with pytest.raises(ConfigError, match="already finished"):
        train(TrainConfig(), trained_run.run_dir, resume=True)


def test_resume_before_the_first_epoch_starts_over(tmp_path, capsys):
    config = TrainConfig(preset="article-001", data=str(MNIST_SUBSET), epochs=1, train_limit=300, test_limit=100)
    (tmp_path / "config.json").write_text(json.dumps({"train": config.to_dict()}))
    result = train(TrainConfig(), tmp_path, resume=True, verbose=0)
    assert "starting from epoch 1" in capsys.readouterr().out
    assert result.metrics["epochs"] == 1


def test_overwrite_refuses_a_folder_cnnkit_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="only replaces cnnkit run folders"):
        train(TrainConfig(data=str(MNIST_SUBSET), epochs=1), tmp_path, overwrite=True)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_bad_data_path_leaves_no_run_folder(tmp_path):
    with pytest.raises(ConfigError):
        train(TrainConfig(data=str(tmp_path / "nowhere")), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field,value,option", [("epochs", -1, "--epochs"), ("val_fraction", 1.5, "--val-fraction"),
                                                ("schedule", "linear", "--schedule")])
def test_bad_options_name_the_option(field, value, option):
    with pytest.raises(ConfigError, match=option):
        TrainConfig(**{field: value}).resolve()


def _checkpoint_epoch(run_dir) -> int:
    try:
        return artifact.read_metadata(run_dir / artifact.CHECKPOINT)["extra"]["training"]["epoch"]
    except (ArtifactError, KeyError):
        return 0


def test_sigkill_mid_epoch_then_resume(tmp_path):
    """Acceptance: kill -9 during an epoch; --resume continues from the last completed epoch."""
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cnnkit.cli", "train", str(MNIST_SUBSET), "--recipe", "article-004",
           "--epochs", "3", "--out", str(run_dir), "--seed", "1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _checkpoint_epoch(run_dir) < 1:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    time.sleep(0.5)  # well inside epoch 2 (an epoch takes seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    completed = _checkpoint_epoch(run_dir)
    assert 1 <= completed < 3, "the run must be killed mid-training"
    before = json.loads((run_dir / "history.json").read_text())

    out = subprocess.run(cmd[:-2] + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"Resuming {run_dir} after epoch {completed}/3" in out.stdout
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 3
    # Completed epochs are kept exactly; training went on from there.
    assert history["loss"][:completed] == before["loss"][:completed]
    assert (run_dir / "model.keras").is_file() and not (run_dir / "checkpoints").exists()
    assert not [p for p in run_dir.rglob(f"*{TMP_MARKER}*")]


def test_mixed_precision_trains_and_saves_a_float32_model(tmp_path):
    from cnnkit.artifact import load_model

    config = TrainConfig(preset="fast", data=str(MNIST_SUBSET), epochs=3, precision="mixed_bfloat16")
    result = train(config, tmp_path / "run", verbose=0)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["precision"] == "mixed_bfloat16"
    model, _ = load_model(tmp_path / "run")
    # Trained with bfloat16 arithmetic, saved computing in float32: it runs the same on every machine.
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert result.metrics["test_accuracy"] > 0.9  # float32: 0.955 with this seed (chance: 0.1)


def test_auto_precision_uses_bfloat16_only_where_it_is_fast(monkeypatch):
    import dataclasses

    from cnnkit import models
    from cnnkit.presets import get_preset

    mixed = dataclasses.replace(get_preset("fast"), precision="mixed_bfloat16")
    monkeypatch.setattr(models, "bfloat16_is_fast", lambda: False)
    assert models.resolve_precision(None, mixed) == "float32"
    assert models.resolve_precision("mixed_bfloat16", mixed) == "mixed_bfloat16"  # asked for explicitly
    monkeypatch.setattr(models, "bfloat16_is_fast", lambda: True)
    assert models.resolve_precision("auto", mixed) == "mixed_bfloat16"
    assert models.resolve_precision(None, get_preset("article-000")) == "float32"
    with pytest.raises(ConfigError, match="Received: precision='fp8'"):
        models.resolve_precision("fp8", mixed)


def test_read_config_brings_back_what_the_run_was_trained_with(tmp_path):
    import dataclasses

    from cnnkit.presets import PRESETS, get_preset
    from cnnkit.training import read_config

    # A tuned preset (cnnkit tune) is not in a fresh process's registry: it comes from config.json.
    tuned = dataclasses.replace(get_preset("fast"), name="fast-tuned-test", batch_size=64)
    run = tmp_path / "tuned"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"preset": tuned.name, "data": "mnist"},
                                                 "preset": tuned.to_dict()}))
    try:
        assert read_config(run).preset == tuned.name
        assert PRESETS[tuned.name] == tuned
    finally:
        PRESETS.pop(tuned.name, None)
    # A photo run recorded before image_size was: decoded at the size the model was trained on.
    old = tmp_path / "old"
    old.mkdir()
    photo96 = dataclasses.replace(get_preset("photo"), input_shape=(96, 96, 3))
    (old / "config.json").write_text(json.dumps({"train": {"preset": "photo", "data": str(tmp_path)},
                                                 "preset": photo96.to_dict()}))
    assert read_config(old).image_size == 96
    # New folder runs record it.
    assert TrainConfig(data=str(tmp_path)).resolve().image_size == get_preset("photo").input_shape[0]
