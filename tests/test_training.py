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
from cnnkit.cli import main
from cnnkit.errors import ArtifactError, ConfigError
from cnnkit.fileio import TMP_MARKER
from cnnkit.models import build_model
from cnnkit.training.config import TrainConfig
from cnnkit.training.fit import split_dataset
from cnnkit.training.run import train

from helpers import MNIST_SUBSET

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
    with pytest.raises(ConfigError, match=r"already holds a finished run") as excinfo:
        train(TrainConfig(data=str(MNIST_SUBSET), epochs=1), trained_run.run_dir)
    assert "overwrite=True" in excinfo.value.hint and "resume" not in excinfo.value.hint  # resuming would fail


def test_finished_run_cannot_resume(trained_run):
    with pytest.raises(ConfigError, match="already finished") as excinfo:
        train(TrainConfig(), trained_run.run_dir, resume=True)
    assert "overwrite=True instead of resume=True" in excinfo.value.hint


def test_resume_before_the_first_epoch_starts_over(tmp_path, capsys):
    config = TrainConfig(recipe="article-001", data=str(MNIST_SUBSET), epochs=1, train_limit=300, test_limit=100)
    (tmp_path / "config.json").write_text(json.dumps({"train": config.to_dict()}))
    result = train(TrainConfig(), tmp_path, resume=True, verbose=2)
    assert "No completed epoch to resume from" in capsys.readouterr().out
    assert result.metrics["epochs"] == 1


def test_overwrite_refuses_a_folder_cnnkit_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not a cnnkit run folder"):
        train(TrainConfig(data=str(MNIST_SUBSET), epochs=1), tmp_path, overwrite=True)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_bad_data_path_leaves_no_run_folder(tmp_path):
    with pytest.raises(ConfigError):
        train(TrainConfig(data=str(tmp_path / "nowhere")), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field,value,option,flag", [("epochs", -1, "--epochs", "-1"),
                                                     ("val_fraction", 1.5, "--val-fraction", "1.5"),
                                                     ("learning_rate", -0.1, "--lr", "-0.1")])
def test_bad_settings_name_the_parameter_in_python_and_the_flag_on_the_command_line(field, value, option, flag, capsys,
                                                                                    tmp_path):
    with pytest.raises(ConfigError, match=rf"Received: {field}={value!r}\.") as excinfo:
        TrainConfig(**{field: value}).resolve()
    assert excinfo.value.params == (field,) and f"Set {field} " in excinfo.value.hint and "--" not in str(excinfo.value)
    code = main(["train", str(MNIST_SUBSET), f"{option}={flag}", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and err[0] == f"Error: {excinfo.value.message}" and err[1].startswith(f"Hint: Set {option} ")


def _checkpoint_epoch(run_dir) -> int:
    try:
        return artifact.read_metadata(run_dir / artifact.CHECKPOINT)["extra"]["training"]["epoch"]
    except (ArtifactError, KeyError):
        return 0


def test_sigkill_mid_epoch_then_resume(tmp_path, capsys):
    """Acceptance: kill -9 during an epoch; --resume continues from the last completed epoch."""
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cnnkit.cli", "train", str(MNIST_SUBSET), "--recipe", "article-004",
           "--epochs", "2", "--out", str(run_dir), "--seed", "1"]
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
    assert completed == 1, "the run must be killed mid-training"
    before = json.loads((run_dir / "history.json").read_text())
    # An unfinished run is named as such wherever a model is wanted, with the command that finishes it.
    for argv in (["predict", str(run_dir), str(MNIST_SUBSET)], ["evaluate", str(run_dir)],
                 ["serve", str(run_dir), "--port", "1"], ["report", str(run_dir)]):
        code, err = main(argv), capsys.readouterr().err
        assert code != 0 and err.startswith(f"Error: Run folder {run_dir} is unfinished: {completed} of 2 epochs"), err
        assert f"Hint: Finish it with `cnnkit train --out {run_dir} --resume`" in err
    assert main(["train", str(MNIST_SUBSET), "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"holds an unfinished run ({completed} of 2 epochs completed)" in err and "Pass --resume" in err

    out = subprocess.run(cmd[:-2] + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"Resuming {run_dir} after epoch {completed}/2" in out.stdout
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 2
    # Completed epochs are kept exactly; training went on from there.
    assert history["loss"][:completed] == before["loss"][:completed]
    assert (run_dir / "model.keras").is_file() and not (run_dir / "checkpoints").exists()
    assert not [p for p in run_dir.rglob(f"*{TMP_MARKER}*")]


def test_mixed_precision_trains_and_saves_a_float32_model(tmp_path):
    from cnnkit.artifact import load_model

    config = TrainConfig(recipe="fast", data=str(MNIST_SUBSET), epochs=3, precision="mixed_bfloat16")
    result = train(config, tmp_path / "run", verbose=0)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["precision"] == "mixed_bfloat16"
    model, _ = load_model(tmp_path / "run")
    # Trained with bfloat16 arithmetic, saved computing in float32: it runs the same on every machine.
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert result.metrics["test_accuracy"] > 0.9  # float32: 0.955 with this seed (chance: 0.1)


def test_auto_precision_uses_bfloat16_only_where_it_is_fast(monkeypatch):
    import dataclasses

    from cnnkit import _backend, models
    from cnnkit.presets import get_preset

    mixed = dataclasses.replace(get_preset("fast"), precision="mixed_bfloat16")
    monkeypatch.setattr(_backend, "bfloat16_is_fast", lambda: False)
    assert models.resolve_precision(None, mixed) == "float32"
    assert models.resolve_precision("mixed_bfloat16", mixed) == "mixed_bfloat16"  # asked for explicitly
    monkeypatch.setattr(_backend, "bfloat16_is_fast", lambda: True)
    assert models.resolve_precision("auto", mixed) == "mixed_bfloat16"
    assert models.resolve_precision(None, get_preset("article-000")) == "float32"
    with pytest.raises(ConfigError, match="Received: precision='fp8'"):
        models.resolve_precision("fp8", mixed)


def test_from_run_brings_back_what_the_run_was_trained_with(tmp_path):
    import dataclasses

    from cnnkit.presets import PRESETS, get_preset

    # A tuned recipe (cnnkit tune) is not in the registry: it comes back from config.json as data, and the
    # registry is left as it was.
    registry = dict(PRESETS)
    tuned = dataclasses.replace(get_preset("fast"), name="fast-tuned-test", batch_size=64)
    run = tmp_path / "tuned"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"recipe": tuned.name, "data": "mnist"},
                                                 "preset": tuned.to_dict()}))
    config = TrainConfig.from_run(run)
    assert config.recipe == tuned and config.resolve().batch_size == 64
    assert PRESETS == registry
    # A photo run recorded before image_size was (and before the word was "recipe"): decoded at the size the
    # model was trained on.
    old = tmp_path / "old"
    old.mkdir()
    photo96 = dataclasses.replace(get_preset("photo"), input_shape=(96, 96, 3))
    (old / "config.json").write_text(json.dumps({"train": {"preset": "photo", "data": str(tmp_path)},
                                                 "preset": photo96.to_dict()}))
    assert TrainConfig.from_run(old).image_size == 96 and TrainConfig.from_run(old).recipe_name == "photo"
    # New folder runs record it.
    assert TrainConfig(data=str(tmp_path)).resolve().image_size == get_preset("photo").input_shape[0]


def _train_cli(tmp_path, name, *options, data=MNIST_SUBSET):
    """`cnnkit train` of article 001 on 600 digits with ``options``; the run's history."""
    out = tmp_path / name
    argv = ["train", str(data), "--recipe", "article-001", "--train-limit", "600", "--test-limit", "100",
            "--out", str(out), *options]
    assert main(argv) == 0
    return json.loads((out / "history.json").read_text())


def test_lr_and_constant_schedule(tmp_path):
    history = _train_cli(tmp_path, "constant", "--epochs", "2", "--lr", "0.0025", "--schedule", "constant")
    assert history["learning_rate"] == pytest.approx([0.0025, 0.0025])


def test_cosine_schedule_decays_from_lr_to_zero(tmp_path):
    lr = _train_cli(tmp_path, "cosine", "--epochs", "3", "--lr", "0.004", "--schedule", "cosine")["learning_rate"]
    assert 0.004 > lr[0] > lr[1] > lr[2] and lr[2] == pytest.approx(0.0, abs=1e-9)  # the end of the schedule


def test_plateau_schedule_cuts_lr_when_validation_loss_stalls(tmp_path):
    # At lr 1e-8 validation loss cannot improve by ReduceLROnPlateau's min_delta (1e-4): every epoch
    # after the first is a plateau, and the rate is cut by 0.3 each time (patience 1).
    lr = _train_cli(tmp_path, "plateau", "--epochs", "3", "--lr", "1e-8", "--schedule", "plateau")["learning_rate"]
    assert lr == pytest.approx([1e-8, 3e-9, 9e-10])


def test_early_stopping_stops_when_validation_loss_rises(tmp_path):
    # Labels that are noise: memorising them makes validation loss rise from the first epochs on.
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.npz"
    np.savez(noise, x_train=rng.integers(0, 256, (700, 28, 28, 1), dtype=np.uint8), y_train=rng.integers(0, 2, 700),
             x_test=rng.integers(0, 256, (100, 28, 28, 1), dtype=np.uint8), y_test=rng.integers(0, 2, 100))
    history = _train_cli(tmp_path, "stopped", "--epochs", "12", "--lr", "0.003", "--early-stopping", "2", data=noise)
    epochs = len(history["loss"])
    assert epochs < 12
    best = int(np.argmin(history["val_loss"]))
    assert epochs == best + 1 + 2  # stopped after 2 epochs (the patience) without a better val_loss


def test_max_minutes_stops_at_an_epoch_boundary(tmp_path, capsys):
    history = _train_cli(tmp_path, "budget", "--epochs", "5", "--max-minutes", "0.001")
    assert len(history["loss"]) == 1  # the first epoch alone outlasts 0.06 s; no second one starts
    assert "Time budget of 0.001 min reached after epoch 1; stopping." in capsys.readouterr().out
    metrics = json.loads((tmp_path / "budget" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and "test_accuracy" in metrics  # a finished run, evaluated


def test_verbose_governs_every_line_a_library_run_would_print(tmp_path, capfd):
    """verbose=0 prints nothing at all (cnnkit's lines go through logging, Keras' bar through fit); a verbose run
    prints the same lines the command line does, with no handler configured by the caller."""
    from photo_factory import write_clean

    write_clean(tmp_path / "photos", per_class=8)  # 40x30: recipe auto picks small, and plans the budget
    config = TrainConfig(data=str(tmp_path / "photos"), budget=0.2, seed=0)
    train(config, tmp_path / "quiet", verbose=0)
    assert capfd.readouterr() == ("", "")
    train(config, tmp_path / "spoken", verbose=2)
    out, _ = capfd.readouterr()
    assert "search" not in json.loads((tmp_path / "spoken" / "config.json").read_text())  # 12 s: too short to search
    for line in ("Recipe auto: ", "Budget ", "Data: ", "Class weights: "):
        assert line in out, (line, out[-2000:])


def _noise_photos(root, per_class=30, size=(72, 96)):
    """Photos of random pixels, larger than 64 px (recipe auto takes them for photos), no two alike."""
    from cnnkit.images import encode_png

    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / label / f"{i}.png").write_bytes(encode_png(rng.integers(0, 256, (*size, 3), dtype=np.uint8)))
    return root


def test_no_function_is_traced_again_from_epoch_to_epoch(tmp_path):
    """Keras' train and test functions are traced once each for a run, partial last batches included."""
    import inspect

    from cnnkit.training.config import load_data
    from cnnkit.training.fit import fit

    config = TrainConfig(data=str(_noise_photos(tmp_path / "photos")), recipe="photo", epochs=3, image_size=48,
                         near_duplicates="off", seed=0).resolve()
    model = fit(load_data(config), config, tmp_path / "run", verbose=0).model
    for function in (model.train_function, model.test_function):
        traced = inspect.getclosurevars(function).nonlocals["multi_step_on_iterator"]
        assert traced.experimental_get_tracing_count() == 1


def test_a_photo_run_prints_no_tensorflow_warning(tmp_path):
    """Auto times a photo side and a budget on throwaway models before the real one: TensorFlow counted those first
    traces as retraces of one function and warned, mid-training. The console shows no TensorFlow warning."""
    import logging

    photos = _noise_photos(tmp_path / "photos", per_class=60, size=(180, 200))  # timed at 160 px, then smaller
    out = subprocess.run([sys.executable, "-m", "cnnkit.cli", "train", str(photos), "--budget", "0.25",
                          "--near-duplicates", "off", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "recipe photo" in out.stdout
    for text in (out.stdout, out.stderr):
        assert "retracing" not in text and "WARNING:tensorflow" not in text, text[-3000:]
    # The message itself is dropped where TensorFlow logs it; TensorFlow's other warnings are not.
    from cnnkit import _backend  # noqa: F401 - installs the filter

    tf_logger = logging.getLogger("tensorflow")
    retrace = logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, "5 out of the last 13 calls to <function "
                                "f> triggered tf.function retracing. Tracing is expensive", None, None)
    other = logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, "something else", None, None)
    assert not tf_logger.filter(retrace) and tf_logger.filter(other)
