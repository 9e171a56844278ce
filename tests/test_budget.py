"""--budget: the planning arithmetic with a fake clock, and a real planned run whose schedule ends."""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest

from cnnkit.errors import ConfigError
from cnnkit.training.budget import MARGIN, Plan, measure, plan, planned, replan
from cnnkit.training.config import TrainConfig

from helpers import MNIST_SUBSET, assert_clean_error, run_cli


def test_plan_fills_the_budget_with_whole_epochs():
    # An epoch: 100 steps of 0.1 s, 2 s of validation, 1 s of checkpoint = 13 s; 10 minutes * 0.95, less 9 s
    # of tracing, hold 43 of them.
    chosen = plan(600, step_seconds=0.1, steps_per_epoch=100, val_seconds=2, checkpoint_seconds=1, batch_size=32,
                  max_epochs=100, start_seconds=9)
    assert chosen.epochs == int((600 * MARGIN - 9) // 13) == 43
    assert 9 + chosen.epochs * chosen.epoch_seconds <= 600 * MARGIN < 9 + (chosen.epochs + 1) * chosen.epoch_seconds
    assert chosen.images_per_second == pytest.approx(320)


def test_plan_stops_at_the_recipes_most_epochs():
    assert plan(3600, step_seconds=0.01, steps_per_epoch=10, val_seconds=0, checkpoint_seconds=0, batch_size=8,
                max_epochs=30).epochs == 30


def test_a_budget_below_one_epoch_plans_one_shorter_epoch():
    chosen = plan(6, step_seconds=0.1, steps_per_epoch=100, val_seconds=0.4, checkpoint_seconds=0.2, batch_size=32,
                  max_epochs=10)
    assert (chosen.epochs, chosen.steps_per_epoch) == (1, 51)  # (6 * 0.95 - 0.6) / 0.1
    assert planned(TrainConfig(epochs=60), chosen).steps_per_epoch == 51


def test_a_budget_below_one_step_is_refused():
    with pytest.raises(ConfigError,
                       match=r"too small for one training step .*Received: budget=0\.001 \(minutes\)") as info:
        plan(0.06, step_seconds=0.5, steps_per_epoch=10, val_seconds=0.2, checkpoint_seconds=0.1, batch_size=8,
             max_epochs=5)
    assert info.value.params == ("budget",) and "Set budget to at least 0.1 minutes" in info.value.hint


def test_plan_line_says_when_the_schedule_ends():
    import datetime

    chosen = Plan(120, epochs=4, steps_per_epoch=10, step_seconds=0.5, epoch_seconds=25, batch_size=32,
                  start_seconds=5)
    line = chosen.line(datetime.datetime(2026, 11, 30, 12, 0, 0))
    assert line == ("Budget 2 min: 4 epochs of 10 steps, about 25.0 s each (64 images/s in training); "
                    "the schedule ends by 12:01:45.")


def test_replan_adds_the_epochs_that_now_fit():
    # 114 s usable (120 * 0.95); 30 s spent after 3 epochs; 8 s an epoch: 10 more fit, 13 in all.
    assert replan(elapsed=30, done=3, target=10, epoch_seconds=8, budget_seconds=120, max_epochs=50) == 13
    assert replan(elapsed=30, done=3, target=10, epoch_seconds=1, budget_seconds=120, max_epochs=50) == 50  # the cap


def test_replan_keeps_a_plan_that_ends_inside_the_budget():
    # 10 planned, 7 to go at 12 s: ends at 114 s, inside 120; 9.5 s an epoch would end at 96.5 s, yet no
    # whole epoch more fits in the margin (114 s): the plan stays.
    assert replan(elapsed=30, done=3, target=10, epoch_seconds=12, budget_seconds=120, max_epochs=50) == 10
    assert replan(elapsed=30, done=3, target=10, epoch_seconds=9.5, budget_seconds=120, max_epochs=50) == 11
    assert replan(elapsed=30, done=3, target=10, epoch_seconds=10.6, budget_seconds=120, max_epochs=50) == 10


def test_replan_waits_for_a_move_worth_a_tenth_of_the_epochs_left():
    # 40 epochs to go in 570 s of margin (600 s budget, 30 s spent): a move must be worth 4 of them.
    # 53 fit at 12.5 s an epoch: 3 more than planned, too few to move.
    assert replan(elapsed=30, done=10, target=50, epoch_seconds=12.5, budget_seconds=600, max_epochs=150) == 50
    assert replan(elapsed=30, done=10, target=50, epoch_seconds=12, budget_seconds=600, max_epochs=150) == 55
    assert replan(elapsed=30, done=10, target=50, epoch_seconds=14.6, budget_seconds=600, max_epochs=150) == 50  # 49
    # 46 fit in the whole budget, 4 short of the plan: down to the 44 that fit in the margin.
    assert replan(elapsed=30, done=10, target=50, epoch_seconds=15.5, budget_seconds=600, max_epochs=150) == 44


def test_replan_shrinks_a_plan_that_would_end_past_the_budget():
    # 7 to go at 14 s would end at 128 s > 120: 6 epochs fit in 114 s, so the schedule ends after 3 + 6.
    assert replan(elapsed=30, done=3, target=10, epoch_seconds=14, budget_seconds=120, max_epochs=50) == 9
    # Spent already: the schedule ends now, never before the epochs done.
    assert replan(elapsed=118, done=8, target=10, epoch_seconds=14, budget_seconds=120, max_epochs=50) == 8


@pytest.mark.backends  # the moved end takes effect by tracing the train step again, on every backend
def test_the_keeper_moves_the_schedule_end_and_fit_runs_on(tmp_path, monkeypatch, caplog):
    """A fake clock says each epoch takes 1 s of a 7 s budget planned for 3: fit goes on to the epochs that fit,
    the cosine schedule ends with them, and config.json records where it moved."""
    from cnnkit import datasets
    from cnnkit.training import fit as fit_module

    readings = itertools.count()  # the keeper reads the clock once at the start, then at each epoch's end
    real = fit_module.BudgetKeeper
    monkeypatch.setattr(fit_module, "BudgetKeeper", lambda *a, **k: real(*a, **k, clock=lambda: next(readings)))
    dataset = datasets.load(MNIST_SUBSET, train_limit=300, test_limit=50)
    config = TrainConfig(data=str(MNIST_SUBSET), recipe="small", epochs=3, seed=0).resolve()
    (tmp_path / "config.json").write_text(json.dumps({"train": config.to_dict(), "budget_plan": {"epochs": 3}}))
    budget = Plan(7, epochs=3, steps_per_epoch=2, step_seconds=0.5, epoch_seconds=1.0, batch_size=256)
    with caplog.at_level(logging.INFO, logger="cnnkit.training"):  # the move is said on training's logger
        result = fit_module.fit(dataset, config, tmp_path, verbose=0, budget=budget)
    # Readings: 0 at the start, k at epoch k's end. Epoch 1 traces; epoch 2 takes 1 s, and with one planned
    # epoch left that one is enough to go on: floor((7 * 0.95 - 2) / 1) = 4 more fit, 6 in all, and the plan
    # holds from there on.
    assert result.epochs == 6 and len(result.history["loss"]) == 6
    assert result.history["learning_rate"][-1] == pytest.approx(0.0, abs=1e-7)
    assert result.history["learning_rate"][2] > 0.0  # where the first plan's schedule had ended
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["epochs"] == 6 and saved["budget_plan"]["replanned"] == [{"after_epoch": 2, "epochs": 6}]
    assert "the schedule now ends after epoch 6 (planned: 3)" in caplog.text
    # The checkpoint a --resume starts from carries the moved schedule.
    from cnnkit import artifact

    model, _ = artifact.load_model(tmp_path / artifact.CHECKPOINT, compile=True)
    steps = -(-result.train_size // config.batch_size)
    schedule = model.optimizer._learning_rate
    assert float(schedule(3 * steps)) > 0.0 and float(schedule(6 * steps)) == pytest.approx(0.0, abs=1e-9)


def test_measure_reads_the_clock_around_the_timed_calls():
    from cnnkit._backend import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", steps_per_execution=1)
    x, y = np.zeros((64, 4), np.float32), np.zeros(64, np.int64)
    ticks = itertools.count(0.0, 0.5)  # a fake clock: every reading half a second after the last
    step, val_batch, save, first = measure(model, {"x": x, "y": y, "batch_size": 4}, (x, y), batch_size=4,
                                           steps_per_execution=1, clock=lambda: next(ticks))
    # Each timed span is one tick: 2 warm-up steps, two halves of 4 training steps, the test step's trace,
    # 2 validation batches, 1 save; the first calls cost their tick each, less the 2 steps' worth of work in them.
    assert (step, val_batch, save, first) == (0.5 / 4, 0.5 / 2, 0.5, 0.5 + 0.5 - 2 * 0.5 / 4)
    # A burst of other work during one half does not count: the faster half is the step.
    readings = iter([0.0, 1.0, 1.0, 3.0, 3.0, 4.0, 4.0, 4.5, 4.5, 5.5, 5.5, 6.0])
    step, val_batch, save, first = measure(model, {"x": x, "y": y, "batch_size": 4}, (x, y), batch_size=4,
                                           steps_per_execution=1, clock=lambda: next(readings))
    assert (step, val_batch, save, first) == (1.0 / 4, 1.0 / 2, 0.5, 1.0 + 0.5 - 2 * 1.0 / 4)


def test_a_planned_run_records_its_plan_and_runs_its_schedule_to_the_end(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "train", MNIST_SUBSET, "--recipe", "small", "--budget", "0.15", "--train-limit",
                           "1200", "--test-limit", "200", "--out", tmp_path / "run")
    assert code == 0, out
    plan_line = next(line for line in out.splitlines() if line.startswith("Budget 0.15 min: "))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    epochs = saved["budget_plan"]["epochs"]
    assert f"{epochs} epoch" in plan_line and saved["train"]["budget"] == 0.15
    for moved in saved["budget_plan"].get("replanned", []):  # the keeper may move the end, and says where
        epochs = moved["epochs"]
    assert saved["train"]["epochs"] == epochs
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["loss"]) == epochs
    assert history["learning_rate"][-1] == pytest.approx(0.0, abs=1e-7)  # warm-up + cosine: decayed to its end


def test_budget_too_small_for_one_step_is_one_error_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", MNIST_SUBSET, "--recipe", "small", "--budget", "0.00001",
                           "--train-limit", "600", "--test-limit", "100", "--out", tmp_path / "run")
    assert_clean_error(code, err, "The budget is too small for one training step", "Hint: Set --budget to at least")
    assert not (tmp_path / "run").exists()
