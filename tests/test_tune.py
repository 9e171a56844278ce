"""`cnnkit tune`: Optuna over a preset's hyperparameters, several workers on one SQLite study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from cnnkit.cli import main
from cnnkit.errors import ConfigError
from cnnkit.presets import get_preset
from cnnkit.training.config import TrainConfig

from helpers import MNIST_SUBSET

optuna = pytest.importorskip("optuna")

PARAMS = {"filters_scale": 0.5, "kernel_size": 5, "dropout": 0.2, "learning_rate": 1e-2, "batch_size": 64}


@pytest.mark.heavy
def test_two_workers_share_one_study_and_the_best_trial_is_a_run(tmp_path, mnist_subset):
    """The acceptance test: two `cnnkit tune` processes, one SQLite study, >= 10 trials, a loadable best run."""
    from cnnkit.predictor import Predictor

    storage, out = f"sqlite:///{tmp_path / 'db' / 'tune.db'}", tmp_path / "best"
    command = [sys.executable, "-m", "cnnkit.cli", "tune", str(MNIST_SUBSET), "--recipe", "article-001",
               "--trials", "10", "--study", "digits", "--storage", storage, "--out", str(out),
               "--epochs", "2", "--train-limit", "1000", "--test-limit", "200"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]
    try:
        logs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log[-3000:]
    assert sum("Re-training it into" in log for log in logs) == 1  # one worker writes the run folder

    study = optuna.load_study(study_name="digits", storage=storage)
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    assert len(finished) >= 10
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both workers ran trials
    best = study.best_trial

    tuned = json.loads((out / "config.json").read_text())["preset"]  # the tuned values, as data
    assert tuned["name"] == "article-001-tuned"
    assert tuned["batch_size"] == best.params["batch_size"]
    assert tuned["optimizer"]["learning_rate"] == pytest.approx(best.params["learning_rate"])
    convs = [kwargs for kind, kwargs in tuned["layers"] if kind == "Conv2D"]
    assert [c["kernel_size"] for c in convs] == [best.params["kernel_size"]] * 2
    assert [c["filters"] for c in convs] == [round(16 * best.params["filters_scale"]),
                                             round(8 * best.params["filters_scale"])]
    record = json.loads((out / "tune.json").read_text())
    assert record["best_trial"] == best.number and record["best_params"] == best.params
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy"] == pytest.approx(best.value, abs=0.03)  # the same recipe, trained again
    assert (out / "report.html").is_file()

    predictions = Predictor.from_artifact(out).predict(mnist_subset.x_test[:50])
    assert len(predictions) == 50
    assert sum(p.label == mnist_subset.class_names[y] for p, y in zip(predictions, mnist_subset.y_test)) >= 25


def test_tuned_preset_is_the_preset_with_five_values_changed():
    from cnnkit.models import build_model
    from cnnkit.training.tune import tuned_preset

    base = get_preset("fast")
    preset = tuned_preset(base, PARAMS, "fast-trial-0", epochs=3)
    convs = [kwargs for kind, kwargs in preset.layers if kind == "Conv2D"]
    base_convs = [kwargs for kind, kwargs in base.layers if kind == "Conv2D"]
    assert [c["filters"] for c in convs] == [max(1, round(c["filters"] * 0.5)) for c in base_convs]
    assert {c["kernel_size"] for c in convs} == {5}
    assert preset.layers[-1] == ("Dropout", {"rate": 0.2})  # fast has none: one before the head
    assert preset.optimizer == {**base.optimizer, "learning_rate": 1e-2}
    assert (preset.batch_size, preset.epochs, preset.schedule) == (64, 3, base.schedule)
    assert preset.params == build_model(preset).count_params()
    assert get_preset("fast") == base  # data in, data out: the registered preset is untouched

    dropouts = [kw["rate"] for kind, kw in tuned_preset(get_preset("article-004"), PARAMS, "x").layers
                if kind == "Dropout"]
    assert dropouts == [0.25, 0.2]  # the last Dropout, the one before the head, is tuned


def test_pruned_trial_stops_training():
    from cnnkit.training.callbacks import ReportToOptuna

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    callback, model = ReportToOptuna(trial), SimpleNamespace(stop_training=False)
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_accuracy": 0.9})
    assert not model.stop_training
    callback.on_epoch_end(1, {"val_accuracy": 0.3})
    assert model.stop_training and callback.pruned_at == 2


def test_workers_of_one_study_must_share_its_settings(tmp_path):
    from cnnkit.training.tune import open_study

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    open_study("s", storage, TrainConfig(recipe="fast", data="a.npz", epochs=2))
    open_study("s", storage, TrainConfig(recipe="fast", data="a.npz", epochs=2))  # a second worker joins
    with pytest.raises(ConfigError, match=r"Study 's' was created for other settings .* Received: epochs=3\."):
        open_study("s", storage, TrainConfig(recipe="fast", data="a.npz", epochs=3))


@pytest.mark.parametrize("options, message", [
    (["--storage", "tune.db"], "Expected a database URL as storage, such as sqlite:///tune.db"),
    (["--storage", "nosuchdb://host/x"], "Cannot open the storage database"),
    (["--storage", "sqlite:///t.db", "--trials", "0"], "Expected at least 1 trial. Received: trials=0."),
])
def test_tune_option_errors(options, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["tune", str(MNIST_SUBSET), "--study", "s", *options]) == 2
    assert message in capsys.readouterr().err


def test_tune_without_optuna_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now fails, as when it is not installed
    assert main(["tune", str(MNIST_SUBSET), "--study", "s", "--storage", "sqlite:///t.db"]) == 2
    err = capsys.readouterr().err
    assert ("Error: Hyperparameter search (cnnkit tune) needs the optional package 'optuna', "
            "which is not installed") in err
    assert "Hint: Install it with: pip install 'cnnkit[tune]'" in err


def test_tune_in_one_process_leaves_the_registry_as_it_was(tmp_path):
    """Each trial's recipe, and the tuned one, travel as Preset objects: nothing is registered, during or after."""
    from cnnkit.presets import PRESETS
    from cnnkit.training.config import TrainConfig
    from cnnkit.training.tune import tune

    registry = dict(PRESETS)
    result = tune(TrainConfig(recipe="article-001", data=str(MNIST_SUBSET), epochs=1, train_limit=600,
                              test_limit=100), study="s", storage=f"sqlite:///{tmp_path / 'tune.db'}", trials=2,
                  out=tmp_path / "best", verbose=0)
    assert result.trials == 2 and result.run is not None and PRESETS == registry
    tuned = json.loads((tmp_path / "best" / "config.json").read_text())
    assert tuned["preset"]["name"] == "article-001-tuned" and tuned["train"]["recipe"] == "article-001-tuned"
