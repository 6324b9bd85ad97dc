"""Experimental color blocks for scripts/cv-color that are not (yet) model features.

`specular`: statistics of the band and centre of a vehicle crop that try to see a dark car's paint
past its sky reflections and highlights (low lightness percentiles, dark/highlight shares, the
color of the pixels left once highlights and sky-blue reflections are dropped). In grouped CV on
dev + extra it adds about +0.5 points to the plain region heads and nothing on top of the
white-balanced ones, so the model does not carry it.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from lotlens.imaging import RGBArray
from lotlens.vision.signals import REGIONS, SIDE, _planes, studio_field

SPECULAR_REGIONS = ("band", "center")


def _pixels(planes: NDArray[np.float32], field: NDArray[np.bool_], region: str) -> NDArray[np.float32]:
    r0, r1, c0, c1 = REGIONS[region]
    rows, cols = slice(int(r0 * SIDE), int(r1 * SIDE)), slice(int(c0 * SIDE), int(c1 * SIDE))
    keep, part = ~field[rows, cols], planes[rows, cols]
    return part[keep] if keep.sum() >= 12 else part.reshape(-1, planes.shape[-1])


def _specular_stats(px: NDArray[np.float32]) -> NDArray[np.float32]:
    lum, a, b, _, sat, val, chroma, grad = px.T
    highlight = (val > 0.75) & (sat < 0.2)
    sky = (lum > 0.5) & (b < -0.04) & (chroma < 0.25)
    dark = lum < 0.3
    matte = ~(highlight | sky)
    m = px[matte] if matte.sum() >= 8 else px
    ml, ma, mb, _, ms, _, mc, _ = m.T
    order, morder = np.sort(lum), np.sort(ml)

    def q(values: NDArray[np.float32], p: float) -> float:
        return float(values[min(len(values) - 1, int(p / 100 * (len(values) - 1)))])

    by_lum = np.argsort(lum)
    quarter = max(1, len(lum) // 4)
    darkq, brightq = by_lum[:quarter], by_lum[-quarter:]
    std = lum.std() + 1e-6
    skew = ((lum - lum.mean()) ** 3).mean() / std**3
    kurt = ((lum - lum.mean()) ** 4).mean() / std**4
    spread = q(order, 90) - q(order, 10)
    stats = [
        *(q(order, p) for p in (2, 5, 10, 20)),
        order[:quarter].mean(),
        *((lum < t).mean() for t in (0.15, 0.25, 0.35, 0.5)),
        *((lum > t).mean() for t in (0.7, 0.85, 0.95)),
        highlight.mean(),
        sky.mean(),
        dark.mean() / (dark.mean() + highlight.mean() + sky.mean() + 1e-3),
        matte.mean(),
        ml.mean(),
        ma.mean(),
        mb.mean(),
        mc.mean(),
        ml.std(),
        ms.mean(),
        *(q(morder, p) for p in (25, 50, 75)),
        np.median(mc),
        np.percentile(mc, 90),
        a[darkq].mean(),
        b[darkq].mean(),
        chroma[darkq].mean(),
        sat[darkq].mean(),
        b[brightq].mean(),
        chroma[brightq].mean(),
        sat[brightq].mean(),
        spread,
        (q(order, 50) - q(order, 10)) / (spread + 1e-3),
        skew,
        (skew**2 + 1) / kurt,
        grad.mean(),
        (grad > 0.15).mean(),
    ]
    return np.nan_to_num(np.asarray(stats, dtype=np.float32))


def specular_statistics(crop64: RGBArray) -> NDArray[np.float32]:
    """40 numbers per region of `SPECULAR_REGIONS`, from a 64 px crop."""
    planes = _planes(crop64)
    lum = planes[..., 0]
    grad = np.hypot(cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)) / 4
    both = np.concatenate([planes, grad[..., None]], axis=-1)
    field = studio_field(crop64)
    return np.concatenate([_specular_stats(_pixels(both, field, r)) for r in SPECULAR_REGIONS])


# Blocks computed from the 64 px crop by a function rather than as a signals region.
BLOCKS = {"specular": specular_statistics}
