"""Metrics from arrays: labels and predicted probabilities in, numbers out.

The same functions score a training validation fold, an `evaluate` run and (later) a sweep.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


def confusion(y_true: Sequence[int], y_pred: Sequence[int], k: int) -> NDArray[np.int64]:
    """Rows are true classes, columns predicted classes."""
    m = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        m[t, p] += 1
    return m


def classification(
    labels: Sequence[str], y_true: Sequence[int], probs: NDArray[np.floating], y_pred: Sequence[int] | None = None
) -> dict[str, Any]:
    """Accuracy, top-2, per-class precision/recall/support and the confusion matrix.

    Args:
        labels: class names, the column order of `probs`.
        y_true: true class index per row.
        probs: `(n, len(labels))` probabilities; a row of NaN means "no answer" (always wrong).
        y_pred: predicted index per row (-1 = no answer); default `argmax(probs)`.
    """
    k = len(labels)
    n = len(y_true)
    probs = np.asarray(probs, dtype=np.float64).reshape(n, k)
    answered: list[bool] = [not np.isnan(row).any() for row in probs]
    if y_pred is None:
        y_pred = [int(np.argmax(p)) if ok else -1 for p, ok in zip(probs, answered, strict=True)]
    y_true_a, y_pred_a = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    correct = y_true_a == y_pred_a
    top2 = np.array([ok and t in np.argsort(-p)[:2] for t, p, ok in zip(y_true_a, probs, answered, strict=True)])
    m = confusion(list(y_true_a), [p if p >= 0 else 0 for p in y_pred_a], k) if n else np.zeros((k, k), int)
    # Unanswered rows were counted in column 0 above: take them back out of the matrix.
    for t, p in zip(y_true_a, y_pred_a, strict=True):
        if p < 0:
            m[t, 0] -= 1
    recall, precision, support = {}, {}, {}
    for i, name in enumerate(labels):
        t = int((y_true_a == i).sum())
        pp = int((y_pred_a == i).sum())
        support[name] = t
        if t:
            recall[name] = float(m[i, i] / t)
        if pp:
            precision[name] = float(m[i, i] / pp)
    return {
        "n": n,
        "accuracy": float(correct.mean()) if n else float("nan"),
        "top2": float(top2.mean()) if n else float("nan"),
        "recall": recall,
        "precision": precision,
        "support": support,
        "confusion": {"labels": list(labels), "matrix": m.tolist()},
        "unanswered": answered.count(False),
    }


def per_group(groups: Sequence[str], correct: Sequence[bool]) -> list[dict[str, Any]]:
    """Accuracy per group (advertiser), worst first, then by size."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for g, c in zip(groups, correct, strict=True):
        hits[g].append(bool(c))
    rows = [{"group": g, "n": len(v), "accuracy": float(np.mean(v))} for g, v in hits.items()]
    return sorted(rows, key=lambda r: (r["accuracy"], -r["n"], r["group"]))


def true_label_probability(y_true: Sequence[int], probs: NDArray[np.floating]) -> NDArray[np.float64]:
    """The probability each row gave its true label (0 for no answer): low = most wrong."""
    probs = np.asarray(probs, dtype=np.float64)
    if not len(y_true):
        return np.zeros(0)
    p = probs[np.arange(len(y_true)), np.asarray(y_true, dtype=int)]
    return np.nan_to_num(p, nan=0.0)


def calibration(y_true: Sequence[int], probs: NDArray[np.floating], bins: int = 10) -> dict[str, Any]:
    """Expected calibration error and the reliability diagram's bins of the top-1 confidence.

    Rows without an answer (NaN) are left out. ECE is the count-weighted mean gap between the
    confidence and the accuracy over `bins` equal-width confidence bins.
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(len(y_true), -1)
    ok = ~np.isnan(probs).any(axis=1)
    p, y = probs[ok], np.asarray(y_true, dtype=int)[ok]
    out: dict[str, Any] = {"n": int(len(y)), "ece": float("nan"), "bins": []}
    if not len(y):
        return out
    conf, hit = p.max(axis=1), (p.argmax(axis=1) == y)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if not sel.any():
            continue
        gap = abs(float(conf[sel].mean()) - float(hit[sel].mean()))
        ece += gap * sel.sum() / len(y)
        out["bins"].append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "n": int(sel.sum()),
                "confidence": float(conf[sel].mean()),
                "accuracy": float(hit[sel].mean()),
            }
        )
    out["ece"] = float(ece)
    return out


def fit_temperature(logits: NDArray[np.floating], y_true: Sequence[int]) -> float:
    """The temperature T that minimises the negative log-likelihood of `softmax(logits / T)`.

    A coarse log-spaced grid, then a finer one around its best; 1.0 when there is nothing to fit.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=int)
    if not len(y):
        return 1.0

    def nll(t: float) -> float:
        s = z / t
        s = s - s.max(axis=1, keepdims=True)
        return float(-(s[np.arange(len(y)), y] - np.log(np.exp(s).sum(axis=1))).mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61))
    best = float(grid[int(np.argmin([nll(t) for t in grid]))])
    fine = best * np.exp(np.linspace(-0.12, 0.12, 25))
    return round(float(fine[int(np.argmin([nll(t) for t in fine]))]), 4)
