"""`train.evaluate.compare`: two models' answers on the same rows, from hand-made predictions."""

from __future__ import annotations

import pytest

from lotlens.labels import COLORS, TYPES
from lotlens.train.evaluate import compare
from lotlens.train.manifest import Row
from lotlens.vision.pipeline import Prediction


def answer(type_: str, color: str | None, model: str) -> Prediction:
    tp = {t: (0.9 if t == type_ else 0.05) for t in TYPES}
    cp = {c: (0.78 if c == color else 0.02) for c in COLORS} if color else {}
    return Prediction(type_, color, tp, cp, None, "none", model)


ROWS = [
    Row("a.jpg", "Dealer", "Red", "g1"),
    Row("b.jpg", "Dealer", "Grey", "g1"),
    Row("c.jpg", "Placeholder", None, "g2"),
    Row("d.jpg", "Stock", "White", "g2"),
]


def test_compare_lists_only_differences_and_names_the_winner() -> None:
    a = [
        answer("Dealer", "Red", "A"),
        answer("Dealer", "Black", "A"),
        answer("Placeholder", None, "A"),
        answer("Stock", "White", "A"),
    ]
    b = [
        answer("Dealer", "Red", "B"),
        answer("Dealer", "Grey", "B"),
        answer("Dealer", "Blue", "B"),
        answer("Stock", "Grey", "B"),
    ]
    r = compare("A", list(zip(ROWS, a, strict=True)), "B", list(zip(ROWS, b, strict=True)), [])
    assert r["a"]["color"]["accuracy"] == pytest.approx(2 / 3)
    assert r["b"]["color"]["accuracy"] == pytest.approx(2 / 3)
    assert r["a"]["placeholder_recall"] == 1.0
    assert r["b"]["placeholder_recall"] == 0.0
    got = {(d["path"], d["task"]): (d["a"], d["b"], d["winner"]) for d in r["differ"]}
    assert got == {
        ("b.jpg", "color"): ("Black", "Grey", "b"),
        ("c.jpg", "type"): ("Placeholder", "Dealer", "a"),
        ("d.jpg", "color"): ("White", "Grey", "a"),
    }
    grey = next(c for c in r["classes"] if c["task"] == "color" and c["label"] == "Grey")
    assert (grey["n"], grey["a"], grey["b"]) == (1, 0.0, 1.0)
    g2 = next(g for g in r["groups"] if g["group"] == "g2")
    assert (g2["a_type"], g2["b_type"], g2["a_color"], g2["b_color"]) == (1.0, 0.5, 1.0, 0.0)


def test_compare_refuses_rows_that_do_not_line_up() -> None:
    a = [(ROWS[0], answer("Dealer", "Red", "A"))]
    b = [(ROWS[1], answer("Dealer", "Red", "B"))]
    with pytest.raises(ValueError, match="same rows"):
        compare("A", a, "B", b, [])
