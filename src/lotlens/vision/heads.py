"""Linear softmax heads: standardise, then a multinomial logistic layer, run in numpy."""

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
