"""Imbalanced data: class weights (auto, balanced, named, none), balanced accuracy and per-class recall."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnkit.errors import ConfigError
from cnnkit.evaluation import evaluate_probabilities
from cnnkit.training.balance import AUTO_RATIO, class_weights, imbalance_ratio

from helpers import assert_clean_error, run_cli

NAMES = ["cloudy", "rain", "shine"]


def test_balanced_weights_make_every_class_count_the_same():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    weights, line = class_weights("balanced", y, NAMES)
    counts = np.bincount(y)
    assert weights == pytest.approx({0: 100 / 180, 1: 100 / 90, 2: 100 / 30})
    assert {c: weights[c] * counts[c] for c in weights} == pytest.approx({0: 100 / 3, 1: 100 / 3, 2: 100 / 3})
    assert line.startswith("Class weights: balanced (imbalance ratio 6.00): cloudy 0.556, rain 1.11, shine 3.33")


def test_auto_weights_only_past_its_ratio():
    near = np.array([0] * 30 + [1] * 20 + [2] * 11)  # 2.7 : 1
    far = np.array([0] * 30 + [1] * 20 + [2] * 10)  # 3.0 : 1
    assert imbalance_ratio(near, 3) < AUTO_RATIO <= imbalance_ratio(far, 3)
    assert class_weights("auto", near, NAMES) == (None, "Class weights: none (imbalance ratio 2.73, below auto's 3).")
    weights, line = class_weights("auto", far, NAMES)
    assert weights == class_weights("balanced", far, NAMES)[0] and "≥ auto's 3" in line


def test_named_weights_and_none():
    weights, line = class_weights("shine=4, rain=0.5", np.array([0, 1, 2]), NAMES)
    assert weights == {0: 1.0, 1: 0.5, 2: 4.0} and line == "Class weights: as given: cloudy 1, rain 0.5, shine 4."
    assert class_weights("none", np.array([0] * 99 + [1, 2]), NAMES)[0] is None


@pytest.mark.parametrize("spec, message", [
    ("hail=2", r"names a class the data does not have: 'hail'\. Expected one of \['cloudy', 'rain', 'shine'\]"),
    ("rain", r"Expected class_weight to be one of \('auto', 'none', 'balanced'\) or NAME=WEIGHT pairs"),
    ("rain=-1", r"Expected class weights > 0\. Received: 'rain=-1'"),
    ("rain=x", r"Expected class weights > 0\. Received: 'rain=x'"),
])
def test_bad_specs_name_what_was_wrong(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        class_weights(spec, np.array([0, 1, 2]), NAMES)
    assert info.value.params == ("class_weight",)


def test_balanced_accuracy_is_the_mean_recall():
    y = np.array([0] * 8 + [1] * 2)
    probs = np.eye(2)[np.array([0] * 8 + [0, 1])]  # every majority image right, one of two minority ones
    result = evaluate_probabilities(y, probs, ["big", "small"])
    assert result.accuracy == pytest.approx(0.9) and result.balanced_accuracy == pytest.approx((1.0 + 0.5) / 2)
    assert [row["recall"] for row in result.per_class] == [1.0, 0.5]


def test_training_prints_and_records_both_accuracies_and_the_weights(tmp_path, capsys):
    from photo_factory import write_clean

    write_clean(tmp_path / "photos", per_class=12, classes=("cloudy", "rain"))
    write_clean(tmp_path / "photos", per_class=3, classes=("shine",))
    code, out, _ = run_cli(capsys, "train", tmp_path / "photos", "--recipe", "photo", "--image-size", "32",
                           "--epochs", "1", "--out", tmp_path / "run")
    assert code == 0, out
    assert "Class weights: balanced (imbalance ratio" in out
    assert "balanced: " in out and "recall per class: cloudy " in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= metrics["balanced_accuracy"] <= 1 and {r["class"] for r in metrics["per_class"]} == {"cloudy", "rain",
                                                                                                       "shine"}


def test_an_unknown_class_in_class_weight_is_refused_before_the_run_folder(tmp_path, capsys):
    from photo_factory import write_clean

    write_clean(tmp_path / "photos", per_class=6)
    code, _, err = run_cli(capsys, "train", tmp_path / "photos", "--class-weight", "hail=2", "--out", tmp_path / "run")
    assert_clean_error(code, err, "class_weight names a class the data does not have: 'hail'",
                       "Hint: Set --class-weight to auto, none, balanced")
    assert not (tmp_path / "run").exists()
