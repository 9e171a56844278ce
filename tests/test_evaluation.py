"""Tests for cnnkit.evaluation against hand-computed examples, NumPy and scikit-learn."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score, precision_recall_fscore_support

from cnnkit.errors import ConfigError, DataError
from cnnkit.evaluation import (
    Evaluation,
    evaluate_probabilities,
    pick_prediction_examples,
    prediction_titles,
)
from cnnkit.report import write_evaluation

NAMES = ["cat", "dog", "bird"]
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
# Predictions (argmax): 0, 1, 1, 1, 2, 0 -> 4 of 6 right.
PROBS = np.array([
    [0.7, 0.2, 0.1],
    [0.3, 0.6, 0.1],
    [0.0, 1.0, 0.0],  # exactly 1 for the true class: clipped to 1 - 1e-7
    [0.2, 0.5, 0.3],
    [0.1, 0.1, 0.8],
    [1.0, 0.0, 0.0],  # exactly 0 for the true class: clipped to 1e-7, not -log(0)
])


def random_probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    logits = rng.normal(size=(n, k))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_accuracy_confusion_and_loss_by_hand():
    ev = evaluate_probabilities(Y_TRUE, PROBS, NAMES)
    assert ev.accuracy == pytest.approx(4 / 6)
    np.testing.assert_array_equal(ev.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert ev.confusion.dtype.kind == "i"
    p_true = np.clip([0.7, 0.3, 1.0, 0.5, 0.8, 0.0], 1e-7, 1 - 1e-7)
    assert ev.loss == pytest.approx(-np.mean(np.log(p_true)), rel=1e-12)
    assert ev.most_confused == [
        {"true": "cat", "predicted": "dog", "count": 1},
        {"true": "bird", "predicted": "cat", "count": 1},
    ]


def test_per_class_matches_hand_and_sklearn():
    ev = evaluate_probabilities(Y_TRUE, PROBS, NAMES)
    assert ev.per_class[0] == {"class": "cat", "precision": 0.5, "recall": 0.5, "f1": 0.5,
                               "support": 2}
    assert ev.per_class[1]["precision"] == pytest.approx(2 / 3)
    assert ev.per_class[1]["recall"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_and_macro_f1_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = 7
    y = rng.integers(0, k - 1, 200)  # the last class never occurs: zero_division must apply
    probs = random_probs(rng, 200, k)
    ev = evaluate_probabilities(y, probs, [f"c{i}" for i in range(k)])
    y_pred = probs.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(y, y_pred, labels=range(k), zero_division=0)
    got = np.array([[row["precision"], row["recall"], row["f1"], row["support"]]
                    for row in ev.per_class])
    np.testing.assert_allclose(got, np.stack([p, r, f, s], axis=1))
    assert ev.macro_f1 == pytest.approx(
        f1_score(y, y_pred, labels=range(k), average="macro", zero_division=0))
    assert ev.accuracy == pytest.approx(np.mean(y_pred == y))
    assert ev.confusion.sum() == 200


def test_most_confused_sorted_limited_and_positive():
    rng = np.random.default_rng(3)
    k = 12
    y = rng.integers(0, k, 2000)
    ev = evaluate_probabilities(y, random_probs(rng, 2000, k), [str(i) for i in range(k)])
    counts = [pair["count"] for pair in ev.most_confused]
    assert len(counts) == 10
    assert counts == sorted(counts, reverse=True) and min(counts) > 0
    off = ev.confusion - np.diag(np.diag(ev.confusion))
    assert counts[0] == off.max()
    assert all(pair["true"] != pair["predicted"] for pair in ev.most_confused)


def test_perfect_predictions_have_no_confusions():
    ev = evaluate_probabilities(np.array([0, 1, 2]), np.eye(3), NAMES)
    assert ev.accuracy == 1.0 and ev.most_confused == [] and ev.macro_f1 == 1.0


def test_to_dict_is_json_serialisable():
    ev = evaluate_probabilities(Y_TRUE, PROBS.astype(np.float32), NAMES)
    data = json.loads(json.dumps(ev.to_dict()))
    assert data["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert data["accuracy"] == pytest.approx(4 / 6)
    assert data["per_class"][2]["class"] == "bird"
    assert data["most_confused"][0]["count"] == 1
    assert set(data) == {"accuracy", "loss", "balanced_accuracy", "confusion", "per_class", "macro_f1", "most_confused"}
    assert data["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 2 + 1 / 2) / 3)  # the mean of the recalls


def test_float_labels_with_integer_values_are_accepted():
    ev = evaluate_probabilities(Y_TRUE.astype(float), PROBS, NAMES)
    assert ev.accuracy == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("y", "probs", "error", "pattern"),
    [
        (Y_TRUE, np.ones((6, 4)) / 4, DataError,
         r"shape \(N, 3\).*Received: probs\.shape=\(6, 4\)"),
        (Y_TRUE, np.ones(6), DataError, r"Received: probs\.shape=\(6,\)"),
        (np.eye(3)[Y_TRUE], PROBS, DataError,
         r"Received: shape=\(6, 3\).*y_true\.argmax\(axis=1\)"),
        (Y_TRUE[:5], PROBS, DataError,
         r"one row per sample\. Received: y_true\.shape=\(5,\), probs\.shape=\(6, 3\)"),
        (np.array([0, 0, 1, 1, 2, 3]), PROBS, DataError,
         r"y_true values in \[0, 3\) for 3 classes\. Received: min=0, max=3"),
        (Y_TRUE + 0.5, PROBS, DataError, r"integer class labels\. Received: shape=\(6,\), dtype=float64"),
        (Y_TRUE, PROBS * 5 - 1, DataError, r"must be probabilities.*apply a softmax"),
        (np.array([], dtype=int), np.zeros((0, 3)), DataError, r"zero samples"),
    ],
)
def test_evaluate_rejects_bad_arrays(y, probs, error, pattern):
    with pytest.raises(error, match=pattern):
        evaluate_probabilities(y, probs, NAMES)


def test_evaluate_rejects_bad_class_names():
    with pytest.raises(ConfigError, match=r"unique\. Received duplicates: \['a'\]"):
        evaluate_probabilities(Y_TRUE, PROBS, ["a", "b", "a"])
    with pytest.raises(ConfigError, match=r"non-empty list of strings"):
        evaluate_probabilities(Y_TRUE, PROBS, "abc")


def test_picks_include_misclassified_up_to_half():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 100)
    pred = y.copy()
    wrong = np.array([3, 17, 42, 66, 99])
    pred[wrong] = (y[wrong] + 1) % 10
    idx = pick_prediction_examples(y, pred, n=20)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert set(wrong.tolist()) <= set(idx.tolist())
    assert np.all(np.diff(idx) > 0)

    pred[:60] = (y[:60] + 1) % 10  # now far more mistakes than places
    idx = pick_prediction_examples(y, pred, n=20)
    assert np.sum(y[idx] != pred[idx]) == 10


def test_picks_are_deterministic_and_seeded():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 500)
    pred = np.where(rng.random(500) < 0.2, (y + 1) % 10, y)
    a = pick_prediction_examples(y, pred, n=20, seed=0)
    np.testing.assert_array_equal(a, pick_prediction_examples(y, pred, n=20, seed=0))
    assert not np.array_equal(a, pick_prediction_examples(y, pred, n=20, seed=1))


def test_picks_with_few_samples_or_one_kind():
    np.testing.assert_array_equal(pick_prediction_examples([0, 1, 2], [0, 2, 2], n=20), [0, 1, 2])
    assert len(pick_prediction_examples(np.zeros(50), np.zeros(50), n=8)) == 8
    all_wrong = pick_prediction_examples(np.zeros(50), np.ones(50), n=8)
    assert len(all_wrong) == 8
    assert pick_prediction_examples([0, 1], [1, 1], n=1).tolist() == [0]


def test_pick_rejects_bad_arguments():
    with pytest.raises(ConfigError, match=r"n must be a positive integer\. Received: n=0"):
        pick_prediction_examples([0], [0], n=0)
    with pytest.raises(DataError, match=r"y_true\.shape=\(3,\), y_pred\.shape=\(2,\)"):
        pick_prediction_examples([0, 1, 2], [0, 1])


def test_prediction_titles_exact_text_and_colors():
    names = [str(d) for d in range(10)]
    titles, colors = prediction_titles(np.array([3, 7]), np.array([7, 7]), names, [0, 1])
    assert titles == ["Prediction: 7 \u2013 Actual: 3", "Prediction: 7 \u2013 Actual: 7"]
    assert colors == ["red", "black"]
    with pytest.raises(DataError, match=r"idx must hold sample indices in \[0, 1\]"):
        prediction_titles(np.array([3, 7]), np.array([7, 7]), names, [2])


def test_write_evaluation_files_round_trip(tmp_path):
    names = ["cat, big", "dog", 'bird "b"']  # commas and quotes must survive the CSVs
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 30)
    probs = random_probs(rng, 30, 3)
    images = rng.integers(0, 256, (30, 16, 16, 1), dtype=np.uint8)
    ev = evaluate_probabilities(y, probs, names)
    paths = write_evaluation(ev, images, y, probs, names, tmp_path / "eval")

    assert set(paths) == {"confusion_matrix_csv", "confusion_matrix_png", "per_class_csv",
                          "predictions_png"}
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == sorted(
        p.name for p in paths.values())  # and no temporaries
    with open(paths["confusion_matrix_csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\predicted", *names]
    assert [r[0] for r in rows[1:]] == names
    np.testing.assert_array_equal(np.array([r[1:] for r in rows[1:]], dtype=int), ev.confusion)
    with open(paths["per_class_csv"], newline="", encoding="utf-8") as f:
        per_class = list(csv.DictReader(f))
    assert [r["class"] for r in per_class] == names
    for got, want in zip(per_class, ev.per_class):
        assert float(got["f1"]) == pytest.approx(want["f1"])
        assert float(got["precision"]) == pytest.approx(want["precision"])
        assert int(got["support"]) == want["support"]
    for key in ("confusion_matrix_png", "predictions_png"):
        with Image.open(paths[key]) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_write_evaluation_rejects_mismatched_inputs(tmp_path):
    ev = evaluate_probabilities(Y_TRUE, PROBS, NAMES)
    with pytest.raises(DataError, match=r"images\.shape=\(5, 8, 8\), y_true\.shape=\(6,\)"):
        write_evaluation(ev, np.zeros((5, 8, 8)), Y_TRUE, PROBS, NAMES, tmp_path)
    other = Evaluation(accuracy=1.0, loss=0.0, balanced_accuracy=1.0, confusion=np.eye(2, dtype=int), per_class=[],
                       macro_f1=1.0, most_confused=[])
    with pytest.raises(DataError, match=r"evaluation\.confusion must be \(3, 3\)"):
        write_evaluation(other, np.zeros((6, 8, 8)), Y_TRUE, PROBS, NAMES, tmp_path)
    assert not list(tmp_path.iterdir())
