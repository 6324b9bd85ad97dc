"""Softmax heads run in numpy: linear (standardise, then a multinomial logistic layer) and small
networks (one hidden layer, several seeds averaged)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class LinearHead:
    """`softmax((((x - mean) / scale) @ coef.T + intercept) / temperature)` over `labels`.

    `temperature` (from model.json, fitted on validation data) only softens or sharpens the
    probabilities; it never changes which label wins.
    """

    labels: tuple[str, ...]
    mean: NDArray[np.float32]
    scale: NDArray[np.float32]
    coef: NDArray[np.float32]
    intercept: NDArray[np.float32]
    temperature: float = 1.0

    def __post_init__(self) -> None:
        k, d = self.coef.shape
        if k != len(self.labels) or self.mean.shape != (d,) or self.scale.shape != (d,) or self.intercept.shape != (k,):
            raise ValueError(f"inconsistent head shapes: coef {self.coef.shape}, {len(self.labels)} labels")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    def logits(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        """Raw scores before the temperature and the softmax."""
        z = ((np.asarray(x, dtype=np.float32) - self.mean) / self.scale) @ self.coef.T + self.intercept
        return z.astype(np.float32, copy=False)

    def predict_proba(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        """Class probabilities, one row per input row, columns in `labels` order."""
        z = self.logits(x) / np.float32(self.temperature)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def to_arrays(self, prefix: str) -> dict[str, NDArray[np.float32]]:
        return {
            f"{prefix}_mean": self.mean,
            f"{prefix}_scale": self.scale,
            f"{prefix}_coef": self.coef,
            f"{prefix}_intercept": self.intercept,
        }

    @classmethod
    def from_arrays(cls, prefix: str, labels: tuple[str, ...], arrays: dict[str, NDArray[np.float32]]) -> LinearHead:
        mean, scale, coef, intercept = (
            np.asarray(arrays[f"{prefix}_{k}"], dtype=np.float32) for k in ("mean", "scale", "coef", "intercept")
        )
        return cls(labels, mean, scale, coef, intercept)


def average_heads(heads: list[LinearHead], weights: list[float] | None = None) -> LinearHead:
    """One head whose logits are the weighted mean of `heads`' logits, each on its own feature block.

    The heads read consecutive blocks of one feature row (in `heads` order); since each is linear,
    their averaged logits are one linear head over the concatenated row: the coefficient blocks
    scaled by their weights side by side, the intercepts summed with the same weights.
    """
    if not heads or any(h.labels != heads[0].labels for h in heads):
        raise ValueError("average_heads needs at least one head, all over the same labels")
    w = [1.0 / len(heads)] * len(heads) if weights is None else [float(v) for v in weights]
    if len(w) != len(heads):
        raise ValueError(f"{len(heads)} heads but {len(w)} weights")
    return LinearHead(
        heads[0].labels,
        np.concatenate([h.mean for h in heads]).astype(np.float32),
        np.concatenate([h.scale for h in heads]).astype(np.float32),
        np.concatenate([wi * h.coef for wi, h in zip(w, heads, strict=True)], axis=1).astype(np.float32),
        np.sum([wi * h.intercept for wi, h in zip(w, heads, strict=True)], axis=0).astype(np.float32),
    )


@dataclass(frozen=True)
class MLPHead:
    """The mean of `members` small networks' softmax, each `softmax(relu(z @ w1.T + b1) @ w2.T + b2)`
    on the standardised row `z = (x - mean) / scale`.

    Shapes: `w1` (members, hidden, features), `b1` (members, hidden), `w2` (members, labels,
    hidden), `b2` (members, labels). Several members trained from different seeds average away
    the spread one network's initialisation gives.
    """

    labels: tuple[str, ...]
    mean: NDArray[np.float32]
    scale: NDArray[np.float32]
    w1: NDArray[np.float32]
    b1: NDArray[np.float32]
    w2: NDArray[np.float32]
    b2: NDArray[np.float32]

    ARRAYS = ("mean", "scale", "w1", "b1", "w2", "b2")

    def __post_init__(self) -> None:
        m, h, d = self.w1.shape
        k = len(self.labels)
        shapes = {"mean": (d,), "scale": (d,), "b1": (m, h), "w2": (m, k, h), "b2": (m, k)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"inconsistent head shapes: {name} {getattr(self, name).shape}, want {shape}")

    @property
    def n_features(self) -> int:
        return int(self.w1.shape[2])

    def predict_proba(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        """Class probabilities, one row per input row, columns in `labels` order."""
        z = (np.asarray(x, dtype=np.float32) - self.mean) / self.scale
        m, h, d = self.w1.shape
        # Every member's hidden layer in one matrix product: (n, d) @ (d, m * h).
        hidden = np.maximum(z @ self.w1.reshape(m * h, d).T + self.b1.reshape(m * h), 0).reshape(len(z), m, h)
        logits = np.einsum("nmh,mkh->nmk", hidden, self.w2) + self.b2
        logits -= logits.max(axis=2, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=2, keepdims=True)).mean(axis=1).astype(np.float32)

    def to_arrays(self, prefix: str) -> dict[str, NDArray[np.float32]]:
        return {f"{prefix}_{k}": getattr(self, k) for k in self.ARRAYS}

    @classmethod
    def from_arrays(cls, prefix: str, labels: tuple[str, ...], arrays: dict[str, NDArray[np.float32]]) -> MLPHead:
        mean, scale, w1, b1, w2, b2 = (np.asarray(arrays[f"{prefix}_{k}"], dtype=np.float32) for k in cls.ARRAYS)
        return cls(labels, mean, scale, w1, b1, w2, b2)


Head = LinearHead | MLPHead


def read_head(prefix: str, labels: tuple[str, ...], arrays: dict[str, NDArray[np.float32]]) -> Head:
    """The head stored under `prefix` in a heads file: a network's arrays, else a linear head's."""
    if f"{prefix}_w1" in arrays:
        return MLPHead.from_arrays(prefix, labels, arrays)
    return LinearHead.from_arrays(prefix, labels, arrays)
