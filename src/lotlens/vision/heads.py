"""Linear softmax heads: standardise, then a multinomial logistic layer, run in numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class LinearHead:
    """`softmax(((x - mean) / scale) @ coef.T + intercept)` over `labels`."""

    labels: tuple[str, ...]
    mean: NDArray[np.float32]
    scale: NDArray[np.float32]
    coef: NDArray[np.float32]
    intercept: NDArray[np.float32]

    def __post_init__(self) -> None:
        k, d = self.coef.shape
        if k != len(self.labels) or self.mean.shape != (d,) or self.scale.shape != (d,) or self.intercept.shape != (k,):
            raise ValueError(f"inconsistent head shapes: coef {self.coef.shape}, {len(self.labels)} labels")

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    def predict_proba(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        """Class probabilities, one row per input row, columns in `labels` order."""
        z = ((np.asarray(x, dtype=np.float32) - self.mean) / self.scale) @ self.coef.T + self.intercept
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
        return cls(
            labels,
            *(np.asarray(arrays[f"{prefix}_{k}"], dtype=np.float32) for k in ("mean", "scale", "coef", "intercept")),
        )
