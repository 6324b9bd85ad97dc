"""Cheap hand-made signals that ImageNet features miss: flatness, white borders, and color.

ImageNet features are nearly color-blind and do not tell a flat graphic from a photo of a flat
thing; these few numbers, computed on a small copy of the image, do.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from lotlens.imaging import RGBArray, resize

SIDE = 64
WHITE = 235

TYPE_SIGNALS = (
    "border_white",
    "white",
    "border_std",
    "colourfulness",
    "saturation",
    "grey_fraction",
    "edges",
    "distinct_colors",
    "top_color",
    "top5_colors",
    "aspect",
)


def small_copy(image: RGBArray) -> RGBArray:
    """The `SIDE` x `SIDE` copy every signal here reads. A caller that computes several signals of one
    image makes it once and passes it as `small` (a resize costs about as much as a signal)."""
    return resize(image, SIDE, SIDE)


def _border(a: NDArray[np.float32], width: int = 3) -> NDArray[np.float32]:
    return np.concatenate(
        [a[:width].reshape(-1, 3), a[-width:].reshape(-1, 3), a[:, :width].reshape(-1, 3), a[:, -width:].reshape(-1, 3)]
    )


def border_white_fraction(image: RGBArray, small: RGBArray | None = None) -> float:
    """Share of the outer frame of the image that is near white (`small`: its `small_copy`, if made)."""
    f = (small_copy(image) if small is None else small).astype(np.float32)
    return float((_border(f).min(axis=1) >= WHITE).mean())


def type_signals(image: RGBArray, small: RGBArray | None = None) -> NDArray[np.float32]:
    """Signals for the type head, in the order of `TYPE_SIGNALS` (`small`: the image's `small_copy`, if made)."""
    h, w = image.shape[:2]
    small = small_copy(image) if small is None else small
    f = small.astype(np.float32)
    border = _border(f)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = (np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())) / 100.0
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV).astype(np.float32)
    sat = hsv[..., 1] / 255.0
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    edges = np.hypot(np.diff(grey, axis=0)[:, :-1], np.diff(grey, axis=1)[:-1, :])
    quant = (small >> 4).reshape(-1, 3).astype(np.int32)
    codes = quant[:, 0] * 256 + quant[:, 1] * 16 + quant[:, 2]
    counts = np.sort(np.bincount(codes, minlength=4096))[::-1]
    n = codes.size
    return np.array(
        [
            (border.min(axis=1) >= WHITE).mean(),
            (f.min(axis=2) >= WHITE).mean(),
            border.std() / 128.0,
            colourfulness,
            sat.mean(),
            (sat < 0.1).mean(),
            (edges > 24).mean(),
            np.count_nonzero(counts) / 256.0,
            counts[0] / n,
            counts[:5].sum() / n,
            np.log(w / h),
        ],
        dtype=np.float32,
    )


def white_background_box(
    image: RGBArray, min_border: float = 0.9, small: RGBArray | None = None
) -> tuple[int, int, int, int] | None:
    """The extent of the non-white pixels of an image on a white field, or None if not on white.

    Studio (stock) shots put the vehicle on white: where the background ends is the vehicle's
    box, which spares the detector (about 40 ms an image).
    """
    if border_white_fraction(image, small) < min_border:
        return None
    mask = image.min(axis=2) < WHITE
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return None
    h, w = image.shape[:2]
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    if (box[2] - box[0]) * (box[3] - box[1]) < 0.05 * h * w:
        return None
    return box


def _center_weights(side: int) -> NDArray[np.float32]:
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    c = (side - 1) / 2
    return np.exp(-(((x - c) / (0.35 * side)) ** 2 + ((y - c) / (0.35 * side)) ** 2) / 2).astype(np.float32)


_WEIGHTS = _center_weights(SIDE)
HUE_BINS, AB_BINS, L_BINS = 18, 8, 8
COLOR_SIGNALS = HUE_BINS + AB_BINS**2 + L_BINS + 4 + 3 + 192 + 144


def color_signals(crop: RGBArray) -> NDArray[np.float32]:
    """Color histograms of a vehicle crop, weighted to its centre, with near-white background out.

    Returns a hue histogram weighted by saturation, a joint Lab a*b* histogram, an L* histogram of
    the grey pixels, the share of grey/dark/bright pixels, and the weighted mean Lab.
    """
    small = small_copy(crop)
    weights = _WEIGHTS.copy()
    # Pixels of a white studio background that touch the frame are not the vehicle.
    background = small.min(axis=2) >= WHITE
    if background[0].mean() > 0.5 or background[-1].mean() > 0.5:
        weights[background] *= 0.05
    weights /= weights.sum()
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hue, sat, val = hsv[..., 0] / 256.0, hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    lum, a, b = lab[..., 0] / 255.0, (lab[..., 1] - 128) / 128.0, (lab[..., 2] - 128) / 128.0
    chroma = sat * val
    hue_hist = np.bincount(
        np.minimum((hue * HUE_BINS).astype(int), HUE_BINS - 1).ravel(),
        weights=(weights * chroma).ravel(),
        minlength=HUE_BINS,
    )
    hue_hist = hue_hist / max(hue_hist.sum(), 1e-6)
    ai = np.clip(((a + 0.5) * AB_BINS).astype(int), 0, AB_BINS - 1)
    bi = np.clip(((b + 0.5) * AB_BINS).astype(int), 0, AB_BINS - 1)
    ab_hist = np.bincount((ai * AB_BINS + bi).ravel(), weights=weights.ravel(), minlength=AB_BINS**2)
    greyish = chroma < 0.15
    l_hist = np.bincount(
        np.minimum((lum * L_BINS).astype(int), L_BINS - 1).ravel(),
        weights=(weights * greyish).ravel(),
        minlength=L_BINS,
    )
    shares = np.array(
        [
            (weights * greyish).sum(),
            (weights * (val < 0.2)).sum(),
            (weights * ((val > 0.8) & (sat < 0.15))).sum(),
            (weights * chroma).sum(),
        ]
    )
    mean_lab = np.array([(weights * lum).sum(), (weights * a).sum(), (weights * b).sum()])
    # Joint histograms: hue x saturation x value, and L* x a* x b*, for shades a marginal misses.
    hi = np.minimum((hue * 12).astype(int), 11)
    si, vi = np.minimum((sat * 4).astype(int), 3), np.minimum((val * 4).astype(int), 3)
    hsv3 = np.bincount((hi * 16 + si * 4 + vi).ravel(), weights=weights.ravel(), minlength=192)
    li = np.minimum((lum * 4).astype(int), 3)
    a6, b6 = np.clip(((a + 0.5) * 6).astype(int), 0, 5), np.clip(((b + 0.5) * 6).astype(int), 0, 5)
    lab3 = np.bincount((li * 36 + a6 * 6 + b6).ravel(), weights=weights.ravel(), minlength=144)
    return np.concatenate([hue_hist, ab_hist, l_hist, shares, mean_lab, hsv3, lab3]).astype(np.float32)


# Fixed regions of the vehicle crop (rows, then columns, as fractions): the lower-middle band of
# the body and the central area. Their color statistics see the paint where a whole-crop histogram
# also sees road, sky and windows.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "band": (0.35, 0.80, 0.10, 0.90),
    "center": (0.25, 0.75, 0.20, 0.80),
}
# A region name with this suffix ("band_wb") reads that region of the white-balanced crop
# (`gray_world_balance`); its block has the same width and layout as the plain region's.
BALANCED = "_wb"
_PCTS = (10, 25, 50, 75, 90)
REGION_HUE_BINS, REGION_L_BINS, REGION_AB_BINS = 12, 8, 5
REGION_SIGNALS = 6 + 5 + 4 * len(_PCTS) + REGION_HUE_BINS + REGION_L_BINS + REGION_AB_BINS**2 + 3 + 6
MIN_REGION_PIXELS = 12


def studio_field(small: RGBArray) -> NDArray[np.bool_]:
    """Near-white pixels of a crop whose top or bottom row is mostly white (a studio field), else none."""
    white = small.min(axis=2) >= WHITE
    if white[0].mean() > 0.5 or white[-1].mean() > 0.5:
        return white
    return np.zeros(white.shape, dtype=bool)


def _percentiles(sorted_rows: NDArray[np.float32], pcts: tuple[int, ...]) -> NDArray[np.float32]:
    """Percentiles of each row of an already sorted array, linear interpolation (numpy's default)."""
    n = sorted_rows.shape[1]
    pos = np.asarray(pcts, dtype=np.float64) / 100.0 * (n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).astype(np.float32)
    return sorted_rows[:, lo] + (sorted_rows[:, hi] - sorted_rows[:, lo]) * frac


def _planes(small: RGBArray) -> NDArray[np.float32]:
    """Per pixel: L*, a*, b*, hue, saturation, value, chroma (scaled to about [0, 1] or [-1, 1])."""
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    lum, a, b = lab[..., 0] / 255.0, (lab[..., 1] - 128) / 128.0, (lab[..., 2] - 128) / 128.0
    hue, sat, val = hsv[..., 0] / 256.0, hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    return np.stack([lum, a, b, hue, sat, val, np.hypot(a, b)], axis=-1)


def _region_stats(planes: NDArray[np.float32], field: NDArray[np.bool_], region: str) -> NDArray[np.float32]:
    r0, r1, c0, c1 = REGIONS[region]
    rows, cols = slice(int(r0 * SIDE), int(r1 * SIDE)), slice(int(c0 * SIDE), int(c1 * SIDE))
    keep = ~field[rows, cols]
    part = planes[rows, cols]
    px = part[keep] if keep.sum() >= MIN_REGION_PIXELS else part.reshape(-1, planes.shape[-1])
    lum, a, b, hue, sat, val, chroma = px.T
    mean, spread = px.mean(axis=0), px.std(axis=0)
    means = [mean[0], mean[1], mean[2], mean[4], mean[5], mean[6]]
    spreads = [spread[0], spread[1], spread[2], spread[4], spread[5]]
    ordered = np.sort(np.stack([lum, a, b, chroma]), axis=1)
    pcts = _percentiles(ordered, _PCTS).ravel()
    w = sat * val
    hue_hist = np.bincount(
        np.minimum((hue * REGION_HUE_BINS).astype(int), REGION_HUE_BINS - 1), weights=w, minlength=REGION_HUE_BINS
    )
    hue_hist = hue_hist / max(hue_hist.sum(), 1e-6)
    l_hist = np.bincount(np.minimum((lum * REGION_L_BINS).astype(int), REGION_L_BINS - 1), minlength=REGION_L_BINS)
    ai = np.clip(((a + 0.3) / 0.6 * REGION_AB_BINS).astype(int), 0, REGION_AB_BINS - 1)
    bi = np.clip(((b + 0.3) / 0.6 * REGION_AB_BINS).astype(int), 0, REGION_AB_BINS - 1)
    ab_hist = np.bincount(ai * REGION_AB_BINS + bi, minlength=REGION_AB_BINS**2)
    n = float(len(lum))
    shares = [(chroma < 0.08).mean(), (val < 0.2).mean(), ((val > 0.8) & (sat < 0.15)).mean()]
    median, top = _percentiles(ordered[:1], (50, 90))[0]
    dark, bright = lum <= median, lum >= top
    tails = [lum[dark].mean(), a[dark].mean(), b[dark].mean(), lum[bright].mean(), a[bright].mean(), b[bright].mean()]
    return np.concatenate([means, spreads, pcts, hue_hist, l_hist / n, ab_hist / n, shares, tails]).astype(np.float32)


def gray_world_balance(small: RGBArray, low: float = 0.6, high: float = 1.6) -> RGBArray:
    """The crop with each channel scaled so that its shades-of-grey (p=2) mean becomes neutral.

    Warm evening light makes silver read brown and shade makes white read blue-grey; the cast lies
    on the whole crop (body, road, background), so dividing out the crop's own mean color removes
    most of it. Clipped and near-black pixels say nothing about the light and are left out of the
    estimate; the gains are clamped, so a strongly colored car keeps much of its color (the plain
    statistics and the crop head still see the raw pixels).
    """
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    lit = (np.maximum(np.maximum(r, g), b) < 250) & (np.minimum(np.minimum(r, g), b) > 8)
    weight = (lit if lit.sum() >= 20 else np.ones_like(lit)).ravel().astype(np.float32)
    px = small.reshape(-1, 3).astype(np.float32)
    light = np.sqrt(weight @ (px * px) / weight.sum()) + 1.0
    gains = np.clip(light.mean() / light, low, high).astype(np.float32)
    # One lookup table per channel: the same numbers as scaling every pixel, at a fraction of the cost.
    table = np.clip(np.arange(256, dtype=np.float32)[:, None] * gains, 0, 255).astype(np.uint8)
    return np.asarray(cv2.LUT(np.ascontiguousarray(small), table.reshape(256, 1, 3)), dtype=np.uint8)


def split_region(name: str) -> tuple[str, bool]:
    """A region name as (geometry in `REGIONS`, read on the white-balanced crop)."""
    region, balanced = (name[: -len(BALANCED)], True) if name.endswith(BALANCED) else (name, False)
    if region not in REGIONS:
        raise ValueError(f"unknown color region {name!r} (known: {sorted(REGIONS)}, each also with {BALANCED!r})")
    return region, balanced


def region_statistics(crop: RGBArray, regions: tuple[str, ...] | list[str]) -> NDArray[np.float32]:
    """Lab/HSV statistics of fixed regions of a vehicle crop (`REGIONS`), white studio field dropped.

    Per region: means, spreads and percentiles of L*, a*, b* and chroma; a chroma-weighted hue
    histogram, an L* histogram and a coarse a*b* histogram; grey/dark/bright shares; and the mean
    Lab of the darker half and of the brightest tenth of the pixels, so a black car's sky
    reflections do not pass for grey paint. `REGION_SIGNALS` numbers per region, in `regions` order.
    A name ending in `BALANCED` gives the same statistics of the white-balanced crop; the studio
    field is always found on the raw crop.
    """
    small = crop if crop.shape[:2] == (SIDE, SIDE) else small_copy(crop)
    if not regions:
        return np.zeros(0, dtype=np.float32)
    parsed = [split_region(r) for r in regions]
    field = studio_field(small)
    views = {balanced for _, balanced in parsed}  # compute only the planes that are read
    planes = {balanced: _planes(gray_world_balance(small) if balanced else small) for balanced in views}
    return np.concatenate([_region_stats(planes[balanced], field, region) for region, balanced in parsed])


def region_signals(crop: RGBArray, region: str) -> NDArray[np.float32]:
    """The statistics of one region (see `region_statistics`)."""
    return region_statistics(crop, (region,))


STUDIO_SIGNALS = (
    "white_top",
    "white_bottom",
    "white_left",
    "white_right",
    "white_field",
    "light_neutral_border",
    "object_extent",
)


def studio_signals(image: RGBArray) -> NDArray[np.float32]:
    """Signals of a studio cut-out on a white or light field, in the order of `STUDIO_SIGNALS`.

    Per side, the near-white share of the frame; the share of the image that is near-white *and*
    connected to the frame (a field around the vehicle, not a white car); the light, neutral share
    of the frame (grey studio walls); and the area of the box around what is not near-white.
    """
    small = small_copy(image)
    lo = small.min(axis=2)
    white = lo >= WHITE
    w = 3
    sides = [white[:w].mean(), white[-w:].mean(), white[:, :w].mean(), white[:, -w:].mean()]
    n, labels = cv2.connectedComponents(white.astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    field = float(np.isin(labels, edge).mean()) if n > 1 and edge.size else 0.0
    border = _border(small.astype(np.float32), w)
    neutral = float(((border.min(axis=1) >= 200) & (np.ptp(border, axis=1) < 14)).mean())
    rows, cols = np.flatnonzero((~white).any(axis=1)), np.flatnonzero((~white).any(axis=0))
    extent = (rows.size and cols.size) and (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) / white.size
    return np.array([*sides, field, neutral, float(extent)], dtype=np.float32)
