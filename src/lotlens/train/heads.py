"""Fitting the heads `lotlens.vision.heads` runs: a multinomial logistic regression and a few
small networks, each on standardised features, with labels absent from the data given no mass."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray

from lotlens.vision.heads import LinearHead, MLPHead


def _standardise(x: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """The rows standardised, with the mean and scale a head stores (constant columns scale 1)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    return (x - mean) / scale, mean.astype(np.float32), scale.astype(np.float32)


def _label_rows(
    classes: NDArray[np.integer], weights: NDArray[np.floating], bias: NDArray[np.floating], k: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """sklearn's output layer (`weights` one row per output, `bias`) as one softmax row per label of
    `k`: a binary fit's single output o for the second class becomes the pair (-o/2, o/2); a label
    no training row had gets no mass."""
    w = np.zeros((k, weights.shape[1]), np.float32)
    b = np.full(k, -50.0, np.float32)
    present = [int(c) for c in classes]
    if len(present) == 2:
        w[present[1]], b[present[1]] = weights[0] / 2, bias[0] / 2
        w[present[0]], b[present[0]] = -weights[0] / 2, -bias[0] / 2
    else:
        for row, c in enumerate(present):
            w[c], b[c] = weights[row], bias[row]
    return w, b


def fit_head(
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    labels: tuple[str, ...],
    c: float,
    class_weight: str | None,
    max_iter: int,
    seed: int,
    sample_weight: NDArray[np.float64] | None = None,
) -> LinearHead:
    """Standardise and fit a multinomial logistic regression; absent classes get no mass."""
    from sklearn.linear_model import LogisticRegression

    z, mean, scale = _standardise(x)
    lr = LogisticRegression(C=c, class_weight=class_weight, max_iter=max_iter, random_state=seed)
    lr.fit(z, y, sample_weight=sample_weight)
    coef, intercept = _label_rows(lr.classes_, lr.coef_, lr.intercept_, len(labels))
    return LinearHead(labels, mean, scale, coef, intercept)


def fit_network_head(
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    labels: tuple[str, ...],
    hidden: int,
    members: int,
    alpha: float,
    max_iter: int,
    seed: int,
) -> MLPHead:
    """Standardise and fit `members` one-hidden-layer networks (seeds `seed`, `seed + 1`, ...);
    absent classes get no mass. A network that stops at `max_iter` is kept as it is."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    z, mean, scale = _standardise(x)
    w1, b1 = np.zeros((members, hidden, x.shape[1]), np.float32), np.zeros((members, hidden), np.float32)
    w2, b2 = np.zeros((members, len(labels), hidden), np.float32), np.zeros((members, len(labels)), np.float32)
    for m in range(members):
        net = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=alpha, max_iter=max_iter, random_state=seed + m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            net.fit(z, y)
        (a1, a2), (c1, c2) = net.coefs_, net.intercepts_
        w1[m], b1[m] = a1.T, c1
        w2[m], b2[m] = _label_rows(net.classes_, a2.T, c2, len(labels))
    return MLPHead(labels, mean, scale, w1, b1, w2, b2)
