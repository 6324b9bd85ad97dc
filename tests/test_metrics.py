"""`train.metrics` on small hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lotlens.train.metrics import (
    calibration,
    classification,
    confusion,
    fit_temperature,
    per_group,
    true_label_probability,
)

LABELS = ["a", "b", "c"]
NAN = float("nan")
# true: a a b b c c
Y_TRUE = [0, 0, 1, 1, 2, 2]
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # a -> a  right, top-2 right
        [0.2, 0.5, 0.3],  # a -> b  wrong, top-2 is {b, c}: wrong
        [0.1, 0.8, 0.1],  # b -> b  right
        [0.6, 0.3, 0.1],  # b -> a  wrong, top-2 is {a, b}: right
        [NAN, NAN, NAN],  # c -> no answer: wrong, not in the matrix
        [0.1, 0.2, 0.7],  # c -> c  right
    ]
)


@pytest.fixture
def result() -> dict:
    return classification(LABELS, Y_TRUE, PROBS)


def test_accuracy_counts_no_answer_as_wrong(result: dict) -> None:
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(3 / 6)
    assert result["unanswered"] == 1


def test_top2(result: dict) -> None:
    assert result["top2"] == pytest.approx(4 / 6)


def test_confusion_matrix_leaves_out_unanswered_rows(result: dict) -> None:
    assert result["confusion"]["labels"] == LABELS
    assert result["confusion"]["matrix"] == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert sum(map(sum, result["confusion"]["matrix"])) == 5


def test_per_class_recall_precision_support(result: dict) -> None:
    assert result["support"] == {"a": 2, "b": 2, "c": 2}
    # c's unanswered row still counts in its support, so c's recall is 1/2.
    assert result["recall"] == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.5})
    assert result["precision"] == pytest.approx({"a": 0.5, "b": 0.5, "c": 1.0})


def test_partial_nan_row_is_no_answer_too() -> None:
    out = classification(LABELS, [1], np.array([[0.1, 0.9, NAN]]))
    assert out["accuracy"] == 0.0
    assert out["top2"] == 0.0
    assert out["unanswered"] == 1
    assert out["confusion"]["matrix"] == [[0, 0, 0]] * 3


def test_explicit_predictions_override_argmax() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8]])
    out = classification(LABELS, [1, 0, 2], probs, y_pred=[1, -1, 2])
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["confusion"]["matrix"] == [[0, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert out["recall"] == pytest.approx({"a": 0.0, "b": 1.0, "c": 1.0})
    # Nobody was predicted "a": no precision for it rather than a division by zero.
    assert "a" not in out["precision"]


def test_class_without_rows_has_no_recall() -> None:
    out = classification(LABELS, [0, 0], np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]]))
    assert out["support"] == {"a": 2, "b": 0, "c": 0}
    assert set(out["recall"]) == {"a"}
    assert out["precision"] == pytest.approx({"a": 1.0, "c": 0.0})


def test_no_rows() -> None:
    out = classification(LABELS, [], np.zeros((0, 3)))
    assert out["n"] == 0
    assert math.isnan(out["accuracy"])
    assert math.isnan(out["top2"])
    assert out["confusion"]["matrix"] == [[0, 0, 0]] * 3
    assert out["recall"] == {}
    assert out["unanswered"] == 0


def test_confusion_rows_are_true_columns_predicted() -> None:
    m = confusion([0, 0, 1, 2], [1, 0, 1, 1], 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_per_group_is_worst_first() -> None:
    rows = per_group(["x", "x", "y", "y", "y", "z"], [True, False, True, True, True, False])
    assert [(r["group"], r["n"], r["accuracy"]) for r in rows] == [("z", 1, 0.0), ("x", 2, 0.5), ("y", 3, 1.0)]


def test_per_group_ties_put_bigger_groups_first_then_by_name() -> None:
    rows = per_group(["b", "a", "c", "c", "d", "d"], [True, True, True, True, False, True])
    assert [r["group"] for r in rows] == ["d", "c", "a", "b"]
    assert rows[0]["accuracy"] == 0.5


def test_per_group_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="zip"):
        per_group(["a", "b"], [True])


def test_true_label_probability_picks_the_true_column() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [NAN, NAN, NAN], [0.25, 0.5, 0.25]])
    p = true_label_probability([0, 2, 1, 1], probs)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, [0.7, 0.6, 0.0, 0.5])
    assert int(np.argmin(p)) == 2  # no answer ranks as most wrong


def test_true_label_probability_of_nothing() -> None:
    assert true_label_probability([], np.zeros((0, 3))).shape == (0,)


def test_calibration_of_a_perfectly_calibrated_toy() -> None:
    # Ten rows at confidence 0.8, eight right; ten at 0.6, six right: no gap in either bin.
    probs = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 10)
    y = [0] * 8 + [1] * 2 + [0] * 6 + [1] * 4
    cal = calibration(y, probs)
    assert cal["n"] == 20
    assert cal["ece"] == pytest.approx(0.0, abs=1e-9)
    assert [(b["n"], b["accuracy"]) for b in cal["bins"]] == [(10, 0.6), (10, 0.8)]


def test_calibration_error_is_the_weighted_gap() -> None:
    # Overconfident: 0.9 sure, half right (gap 0.4, 4 rows); 0.55 sure, all right (gap 0.45, 2 rows).
    probs = np.array([[0.9, 0.1]] * 4 + [[0.55, 0.45]] * 2 + [[np.nan, np.nan]])
    y = [0, 0, 1, 1, 0, 0, 0]
    cal = calibration(y, probs)
    assert cal["n"] == 6  # the unanswered row is left out
    assert cal["ece"] == pytest.approx((4 * 0.4 + 2 * 0.45) / 6)


def test_fit_temperature_recovers_the_temperature_of_the_data() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    true_t = 2.5
    p = np.exp(logits / true_t)
    p /= p.sum(axis=1, keepdims=True)
    y = [int(rng.choice(5, p=row)) for row in p]
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.1)
    assert fit_temperature(np.zeros((0, 5)), []) == 1.0
