"""Fitting the heads `lotlens.vision.heads` runs: a multinomial logistic regression and a few
small networks, each on standardised features, with labels absent from the data given no mass."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray

from lotlens.vision.heads import LinearHead, MLPHead


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

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    lr = LogisticRegression(C=c, class_weight=class_weight, max_iter=max_iter, random_state=seed)
    lr.fit(z, y, sample_weight=sample_weight)
    coef = np.zeros((len(labels), x.shape[1]), dtype=np.float32)
    intercept = np.full(len(labels), -50.0, dtype=np.float32)
    classes = [int(k) for k in lr.classes_]
    if len(classes) == 2:  # sklearn's binary form: one row for the second class
        coef[classes[1]], intercept[classes[1]] = lr.coef_[0] / 2, lr.intercept_[0] / 2
        coef[classes[0]], intercept[classes[0]] = -lr.coef_[0] / 2, -lr.intercept_[0] / 2
    else:
        for row, k in enumerate(classes):
            coef[k], intercept[k] = lr.coef_[row], lr.intercept_[row]
    return LinearHead(labels, mean.astype(np.float32), scale.astype(np.float32), coef, intercept)


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

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    k = len(labels)
    w1, b1 = np.zeros((members, hidden, x.shape[1]), np.float32), np.zeros((members, hidden), np.float32)
    w2, b2 = np.zeros((members, k, hidden), np.float32), np.full((members, k), -50.0, np.float32)
    for m in range(members):
        net = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=alpha, max_iter=max_iter, random_state=seed + m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            net.fit(z, y)
        (a1, a2), (c1, c2) = net.coefs_, net.intercepts_
        w1[m], b1[m] = a1.T, c1
        classes = [int(c) for c in net.classes_]
        if len(classes) == 2:  # one logistic output for the second class: its softmax pair is (-o/2, o/2)
            w2[m, classes[1]], b2[m, classes[1]] = a2[:, 0] / 2, c2[0] / 2
            w2[m, classes[0]], b2[m, classes[0]] = -a2[:, 0] / 2, -c2[0] / 2
        else:
            for row, c in enumerate(classes):
                w2[m, c], b2[m, c] = a2[:, row], c2[row]
    return MLPHead(labels, mean.astype(np.float32), scale.astype(np.float32), w1, b1, w2, b2)
