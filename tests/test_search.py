"""Recipe auto's search: candidates on the validation split inside the budget, the one-standard-error rule, the
leaderboard in config.json and report.html, and a search killed midway that --resume goes on with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cnnkit.presets import get_preset
from cnnkit.training import candidates
from cnnkit.training.search import Entry, SearchResult, choose, entries_of, open_study, standard_error

from helpers import MNIST_SUBSET


def _entry(number: int, accuracy: float | None, n: int = 400, state: str = "complete", **values) -> Entry:
    return Entry(number, {**candidates.SMALL, **values}, state, accuracy,
                 standard_error(accuracy, n) if accuracy is not None else None, 5, 1.0, 1000)


def test_the_simplest_candidate_within_one_standard_error_of_the_best_wins():
    simple = _entry(0, 0.885)
    wide = _entry(1, 0.90, width=48, depth=2)  # SE of 0.90 on 400 images: 1.5 points
    winner, why = choose([simple, wide])
    assert winner is simple and "within one standard error (1.50%) of the best, #1 (90.00%), and simpler" in why
    far = _entry(0, 0.86)  # 4 points below: the validation split can tell them apart
    winner, why = choose([far, wide])
    assert winner is wide and why == "#1 has the best validation accuracy (90.00%)"
    # More validation images, a smaller error: 1.5 points apart is then a difference.
    winner, _ = choose([_entry(0, 0.885, n=10_000), _entry(1, 0.90, n=10_000, width=48, depth=2)])
    assert winner.number == 1
    # Pruned trials do not compete, whatever they scored when they stopped.
    winner, _ = choose([simple, _entry(2, 0.99, state="pruned", width=32)])
    assert winner is simple
    with pytest.raises(ValueError, match="No candidate completed"):
        choose([_entry(3, 0.5, state="pruned")])


def test_the_winner_keeps_time_for_one_epoch_however_long_the_search_took():
    """The least a winner's training is given after the search: its trial's start and one epoch (the CI machine
    once left 3 s of a 12-s budget, and the plan for the winner refused to train at all)."""
    winner = Entry(1, dict(candidates.SMALL), "complete", 0.9, 0.01, epochs=4, seconds=10.0, params=1000,
                   epoch_seconds=2.0)
    found = SearchResult(get_preset("small"), 1, "", [_entry(0, 0.8), winner], 4, seconds=60.0,
                         validation_images=400)
    assert found.least_final_seconds() == pytest.approx((10.0 - 3 * 2.0) / 0.95)  # start 2 s + one 2-s epoch


def test_the_base_point_of_the_space_is_the_small_recipe_itself():
    small = get_preset("small")
    same = candidates.small_candidate(small, candidates.SMALL, (28, 28, 1), "small-again")
    assert same.layers == small.layers and same.optimizer == small.optimizer
    assert same.preprocessing == small.preprocessing
    # An 8x8 image is not pooled down to 2x2: its stages keep the 8 pixels.
    tiny = candidates.small_candidate(small, candidates.SMALL, (8, 8, 1), "tiny")
    assert not any(kind == "MaxPooling2D" for kind, _ in tiny.layers)
    for values in candidates.first_candidates():
        assert set(values) == set(candidates.SPACE) and all(values[k] in candidates.SPACE[k] for k in values)


def test_a_study_killed_with_a_running_trial_tries_that_candidate_again(tmp_path):
    study = open_study(tmp_path, seed=0, epochs=4)
    first = study.ask()  # the base recipe, enqueued first; its process dies here
    assert candidates.suggest(first) == candidates.SMALL
    again = open_study(tmp_path, seed=0, epochs=9)
    assert again.user_attrs["trial_epochs"] == 4  # the study keeps the epochs it was made with
    assert [t.state.name for t in again.trials][:1] == ["FAIL"]
    asked = [again.ask() for _ in candidates.first_candidates()]  # the waiting candidates, then the retry
    retried = [trial for trial in asked if trial.user_attrs.get("retry_of") == first.number]
    assert len(retried) == 1 and candidates.suggest(retried[0]) == candidates.SMALL
    assert entries_of(again, 100)[0].state == "failed"


def _search_record(run) -> dict:
    return json.loads((run / "config.json").read_text()).get("search", {})


@pytest.mark.serial  # asserts the share of a one-minute budget used: alone, not beside another test process
def test_auto_searches_small_images_inside_the_budget_and_shows_its_leaderboard(tmp_path):
    """cnnkit train on small images with no recipe: candidates, the winner by the rule, most of the budget used
    and none of it overrun, the leaderboard in config.json and report.html."""
    from cnnkit.training.config import TrainConfig
    from cnnkit.training.run import train

    budget = 1.0  # a minute: the last candidate that does not fit leaves a few seconds, a small share
    result = train(TrainConfig(data=str(MNIST_SUBSET), train_limit=1200, test_limit=200, budget=budget, seed=0),
                   tmp_path / "run", verbose=0)
    found = _search_record(result.run_dir)
    assert found["done"] and len(found["leaderboard"]) >= 2
    entries = [Entry(**row) for row in found["leaderboard"]]
    assert choose(entries)[0].number == found["winner"]
    assert found["leaderboard"][0]["values"] == candidates.SMALL  # the base recipe is the first candidate
    metrics = result.metrics
    used = metrics["budget_used_seconds"]
    assert 0.85 * budget * 60 <= used <= 1.03 * budget * 60, (used, found["seconds"], metrics["train_seconds"])
    report = (result.run_dir / "report.html").read_text()
    assert "Recipe auto&#x27;s search" in report and found["reason"].split(" (")[0] in report
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["preset"]["name"] == "small-auto" and config["train"]["budget"] == budget


@pytest.mark.serial  # auto searches only where the base recipe's schedule takes under half the budget: timed
def test_a_run_killed_during_its_search_resumes_with_it(tmp_path):
    run = tmp_path / "run"
    # 600 digits: the small recipe's 30 epochs (a checkpoint each) take well under half of 45 s, so auto searches.
    cmd = [sys.executable, "-m", "cnnkit.cli", "train", str(MNIST_SUBSET), "--train-limit", "600", "--test-limit",
           "200", "--budget", "0.75", "--seed", "1", "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
    seen, deadline = [], time.monotonic() + 300
    for line in proc.stdout:  # the first candidate finished: kill during the second
        seen.append(line)
        if line.startswith("Search #0"):
            break
        assert time.monotonic() < deadline, "".join(seen)
    assert seen and seen[-1].startswith("Search #0"), "".join(seen)  # it searched (else the run just ended)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model.keras").exists() and not _search_record(run).get("done")
    from cnnkit.artifact import unfinished_run

    assert unfinished_run(run) == "its search for a recipe was under way"
    out = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    found = _search_record(run)
    rows = {row["number"]: row for row in found["leaderboard"]}
    assert rows[0]["values"] == candidates.SMALL and rows[0]["state"] in ("complete", "pruned")
    assert rows[1]["state"] == "failed"  # cut short by the kill (queued again, behind the candidates waiting)
    assert max(rows) > 1 and all(row["epochs"] for n, row in rows.items() if n != 1)  # the search went on
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["test_accuracy"])


def test_the_time_kept_is_what_the_candidate_the_rule_would_choose_needs():
    """weather32 seed 6's leaderboard at 582.6 s of 900: the best (#6, 2.66 s an epoch) would need 234 s for its
    80 epochs, but the rule chooses #4 (1.35 s an epoch, within one error of it and simpler), whose 80 epochs take
    about 119 s. The search goes on there (it stopped, and 76.7 % of the budget was used), and stops later."""
    from cnnkit.training.search import time_to_stop

    def entry(number, accuracy, epoch_seconds, seconds, **values):
        return Entry(number, {**candidates.SMALL, **values}, "complete", accuracy, standard_error(accuracy, 110),
                     20, seconds, 1000, epoch_seconds)

    entries = [entry(0, 0.79, 0.54, 15.0), entry(4, 0.827, 1.35, 35.3, width=32, dropout=0.25),
               entry(6, 0.855, 2.66, 62.4, width=32, depth=2, head="average", dropout=0.25, weight_decay=0.05),
               entry(1, 0.818, 2.5, 56.0, width=32, depth=2, head="average", dropout=0.25, weight_decay=0.05,
                     translation=0.1)]
    assert choose(entries)[0].number == 4
    assert not time_to_stop(entries, elapsed=582.6, budget_seconds=900)
    assert time_to_stop(entries, elapsed=720.0, budget_seconds=900)
    assert not time_to_stop([], elapsed=899.0, budget_seconds=900)  # nothing finished yet: the first trial runs
