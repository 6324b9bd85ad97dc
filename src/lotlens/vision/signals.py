"""Cheap hand-made signals that ImageNet features miss: flatness, white borders, and color.
Kept whole (about 480 lines): every number the heads read beside the embedding is defined here, so
that training and serving cannot drift apart and one golden test pins them all.

ImageNet features are nearly color-blind and do not tell a flat graphic from a photo of a flat
thing; these few numbers, computed on a small copy of the image, do.

Each signal has a `*_many` form over a stack of small copies (one bincount with per-image offsets,
masked sums, one color conversion for the stack): per image, numpy's calls on 64 x 64 arrays cost
more than their arithmetic. Each row equals the one-image computation bit for bit (sums add in the
same order), so heads trained on either read the same numbers; the one-image functions are the
`*_many` ones over a stack of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


def _stack(smalls: Sequence[RGBArray]) -> NDArray[np.uint8]:
    """`SIDE` x `SIDE` copies as one `(N, SIDE, SIDE, 3)` array."""
    return np.stack(smalls) if len(smalls) else np.zeros((0, SIDE, SIDE, 3), np.uint8)


def _cvt(stack: NDArray[np.uint8], code: int) -> NDArray[np.uint8]:
    """`cv2.cvtColor` of every image of a stack in one call (a color conversion is per pixel)."""
    n, h, w = stack.shape[:3]
    if n == 0:
        return np.zeros((0, h, w, 1 if code == cv2.COLOR_RGB2GRAY else 3), np.uint8)
    out = cv2.cvtColor(np.ascontiguousarray(stack).reshape(n * h, w, 3), code)
    return np.asarray(out, dtype=np.uint8).reshape(n, h, w, -1)


def channel_min(a: NDArray[Any]) -> NDArray[Any]:
    """The smallest of the three channels of each pixel (`a.min(axis=-1)`, 10-30x faster: numpy's
    reduction over a last axis of 3 costs about 10 ns a pixel, elementwise minimums a fraction)."""
    return np.minimum(np.minimum(a[..., 0], a[..., 1]), a[..., 2])


def _rows(a: NDArray[Any]) -> NDArray[Any]:
    """Each image's values as one contiguous row: a reduction along it adds in the same order as the
    same reduction over that image alone, so batched signals equal per-image ones bit for bit."""
    return np.ascontiguousarray(a).reshape(len(a), -1)


def _border(a: NDArray[Any], width: int = 3) -> NDArray[Any]:
    """The outer frame's pixels of each image of a stack: `(N, pixels, 3)`."""
    n, h, w = a.shape[:3]
    return np.concatenate(
        [
            a[:, :width].reshape(n, width * w, 3),
            a[:, -width:].reshape(n, width * w, 3),
            a[:, :, :width].reshape(n, h * width, 3),
            a[:, :, -width:].reshape(n, h * width, 3),
        ],
        axis=1,
    )


def _border_white(stack: NDArray[np.uint8]) -> NDArray[np.float64]:
    return (channel_min(_border(stack)) >= WHITE).mean(axis=1)


def type_signals(image: RGBArray, small: RGBArray | None = None) -> NDArray[np.float32]:
    """Signals for the type head, in the order of `TYPE_SIGNALS` (`small`: the image's `small_copy`, if made)."""
    return type_signals_many([image], [small])[0]


def type_signals_many(
    images: Sequence[RGBArray], smalls: Sequence[RGBArray | None] | None = None
) -> NDArray[np.float32]:
    """`type_signals` of each image, `(N, len(TYPE_SIGNALS))`, computed over the stack of their small
    copies at once (per image, the numpy calls on 64 x 64 arrays cost more than their arithmetic)."""
    given = list(smalls) if smalls is not None else [None] * len(images)
    s = _stack([small_copy(im) if sm is None else sm for im, sm in zip(images, given, strict=True)])
    n = len(s)
    if n == 0:
        return np.zeros((0, len(TYPE_SIGNALS)), np.float32)
    f = s.astype(np.float32)
    frame = _border(f)
    border = _rows(frame)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    rg, yb = _rows(r - g), _rows(0.5 * (r + g) - b)
    colourfulness = (
        np.hypot(rg.std(axis=1), yb.std(axis=1)) + 0.3 * np.hypot(rg.mean(axis=1), yb.mean(axis=1))
    ) / 100.0
    sat = _rows(_cvt(s, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32) / 255.0)
    grey = _cvt(s, cv2.COLOR_RGB2GRAY)[..., 0].astype(np.float32)
    edges = np.hypot(np.diff(grey, axis=1)[:, :, :-1], np.diff(grey, axis=2)[:, :-1, :])
    quant = (s >> 4).reshape(n, -1, 3).astype(np.int32)
    codes = quant[..., 0] * 256 + quant[..., 1] * 16 + quant[..., 2] + 4096 * np.arange(n)[:, None]
    counts = -np.sort(-np.bincount(codes.ravel(), minlength=4096 * n).reshape(n, 4096), axis=1)
    pixels = codes.shape[1]
    aspect = [np.log(im.shape[1] / im.shape[0]) for im in images]
    return np.stack(
        [
            (channel_min(frame) >= WHITE).mean(axis=1),
            _rows(channel_min(f) >= WHITE).mean(axis=1),
            border.std(axis=1) / 128.0,
            colourfulness,
            sat.mean(axis=1),
            (sat < 0.1).mean(axis=1),
            _rows(edges > 24).mean(axis=1),
            np.count_nonzero(counts, axis=1) / 256.0,
            counts[:, 0] / pixels,
            counts[:, :5].sum(axis=1) / pixels,
            np.asarray(aspect),
        ],
        axis=1,
    ).astype(np.float32)


def white_background_box(
    image: RGBArray, min_border: float = 0.9, small: RGBArray | None = None
) -> tuple[int, int, int, int] | None:
    """The extent of the non-white pixels of an image on a white field, or None if not on white.

    Studio (stock) shots put the vehicle on white: where the background ends is the vehicle's
    box, which spares the detector (about 40 ms an image).
    """
    return white_background_boxes([image], [small], min_border)[0]


def white_background_boxes(
    images: Sequence[RGBArray], smalls: Sequence[RGBArray | None] | None = None, min_border: float = 0.9
) -> list[tuple[int, int, int, int] | None]:
    """`white_background_box` of each image: the frames of all small copies read at once, the
    full-size extent only for the images on white."""
    given = list(smalls) if smalls is not None else [None] * len(images)
    on_white = _border_white(
        _stack([small_copy(im) if sm is None else sm for im, sm in zip(images, given, strict=True)])
    )
    return [_extent(im) if frac >= min_border else None for im, frac in zip(images, on_white, strict=True)]


def _extent(image: RGBArray) -> tuple[int, int, int, int] | None:
    mask = channel_min(image) < WHITE
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
    return color_signals_many([small_copy(crop)])[0]


def _histograms(index: NDArray[np.integer[Any]], bins: int, weights: NDArray[Any]) -> NDArray[np.float64]:
    """Per image of a stack, the weighted histogram of `index` (values in [0, bins)): one bincount
    over the stack, each image's bins offset by its position; `(N, bins)`."""
    n = len(index)
    offset = (np.arange(n) * bins).reshape((n,) + (1,) * (index.ndim - 1))
    flat = np.bincount(
        (index + offset).ravel(), weights=np.broadcast_to(weights, index.shape).ravel(), minlength=n * bins
    )
    return flat.astype(np.float64, copy=False).reshape(n, bins)


def color_signals_many(smalls: Sequence[RGBArray]) -> NDArray[np.float32]:
    """`color_signals` of each crop's `small_copy`, `(N, COLOR_SIGNALS)`, over the stack at once."""
    s = _stack(smalls)
    n = len(s)
    if n == 0:
        return np.zeros((0, COLOR_SIGNALS), np.float32)
    weights = np.broadcast_to(_WEIGHTS, s.shape[:3]).copy()
    # Pixels of a white studio background that touch the frame are not the vehicle.
    background = channel_min(s) >= WHITE
    studio = (background[:, 0].mean(axis=1) > 0.5) | (background[:, -1].mean(axis=1) > 0.5)
    weights[background & studio[:, None, None]] *= 0.05
    weights /= _rows(weights).sum(axis=1)[:, None, None]
    hsv = _cvt(s, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hue, sat, val = hsv[..., 0] / 256.0, hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    lab = _cvt(s, cv2.COLOR_RGB2LAB).astype(np.float32)
    lum, a, b = lab[..., 0] / 255.0, (lab[..., 1] - 128) / 128.0, (lab[..., 2] - 128) / 128.0
    chroma = sat * val
    hue_hist = _histograms(np.minimum((hue * HUE_BINS).astype(int), HUE_BINS - 1), HUE_BINS, weights * chroma)
    hue_hist = hue_hist / np.maximum(hue_hist.sum(axis=1), 1e-6)[:, None]
    ai = np.clip(((a + 0.5) * AB_BINS).astype(int), 0, AB_BINS - 1)
    bi = np.clip(((b + 0.5) * AB_BINS).astype(int), 0, AB_BINS - 1)
    ab_hist = _histograms(ai * AB_BINS + bi, AB_BINS**2, weights)
    greyish = chroma < 0.15
    l_hist = _histograms(np.minimum((lum * L_BINS).astype(int), L_BINS - 1), L_BINS, weights * greyish)

    def weighted(x: NDArray[Any]) -> NDArray[np.float32]:
        return _rows(weights * x).sum(axis=1)

    shares = [weighted(greyish), weighted(val < 0.2), weighted((val > 0.8) & (sat < 0.15)), weighted(chroma)]
    mean_lab = [weighted(lum), weighted(a), weighted(b)]
    # Joint histograms: hue x saturation x value, and L* x a* x b*, for shades a marginal misses.
    hi = np.minimum((hue * 12).astype(int), 11)
    si, vi = np.minimum((sat * 4).astype(int), 3), np.minimum((val * 4).astype(int), 3)
    hsv3 = _histograms(hi * 16 + si * 4 + vi, 192, weights)
    li = np.minimum((lum * 4).astype(int), 3)
    a6, b6 = np.clip(((a + 0.5) * 6).astype(int), 0, 5), np.clip(((b + 0.5) * 6).astype(int), 0, 5)
    lab3 = _histograms(li * 36 + a6 * 6 + b6, 144, weights)
    return np.concatenate(
        [hue_hist, ab_hist, l_hist, np.stack(shares, axis=1), np.stack(mean_lab, axis=1), hsv3, lab3], axis=1
    ).astype(np.float32)


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
    return _studio_fields(small[None])[0]


def _studio_fields(stack: NDArray[np.uint8]) -> NDArray[np.bool_]:
    white = channel_min(stack) >= WHITE
    studio = (white[:, 0].mean(axis=1) > 0.5) | (white[:, -1].mean(axis=1) > 0.5)
    return white & studio[:, None, None]


def _percentiles(sorted_rows: NDArray[np.float32], pcts: tuple[int, ...], n: NDArray[np.intp]) -> NDArray[np.float32]:
    """Percentiles of each row of an already sorted array, linear interpolation (numpy's default).

    `sorted_rows` is `(..., length)`; `n`, shaped as its leading axes, says how many leading values
    of each row count (the rest are padding). Result: `(..., len(pcts))`.
    """
    pos = np.asarray(pcts, dtype=np.float64) / 100.0 * (n[..., None] - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n[..., None] - 1)
    frac = (pos - lo).astype(np.float32)
    low, high = np.take_along_axis(sorted_rows, lo, axis=-1), np.take_along_axis(sorted_rows, hi, axis=-1)
    return low + (high - low) * frac


def _planes(small: RGBArray) -> NDArray[np.float32]:
    """Per pixel: L*, a*, b*, hue, saturation, value, chroma (scaled to about [0, 1] or [-1, 1])."""
    return _planes_many(small[None])[0]


def _planes_many(stack: NDArray[np.uint8]) -> NDArray[np.float32]:
    """`_planes` of each image of a stack, `(N, H, W, 7)`."""
    lab = _cvt(stack, cv2.COLOR_RGB2LAB).astype(np.float32)
    hsv = _cvt(stack, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    lum, a, b = lab[..., 0] / 255.0, (lab[..., 1] - 128) / 128.0, (lab[..., 2] - 128) / 128.0
    hue, sat, val = hsv[..., 0] / 256.0, hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    return np.stack([lum, a, b, hue, sat, val, np.hypot(a, b)], axis=-1)


def _mean_as_numpy(total: NDArray[np.float32], count: NDArray[np.intp]) -> NDArray[np.float32]:
    """`total / count` as numpy's float32 `mean` divides a sum by its count (in float64, then rounded)."""
    return (total.astype(np.float64) / count).astype(np.float32)


def _region_stats(planes: NDArray[np.float32], field: NDArray[np.bool_], region: str) -> NDArray[np.float32]:
    """The statistics of one region of each crop of a stack, `(N, REGION_SIGNALS)`.

    A crop's kept pixels are its region's pixels off the studio field (all of them where fewer than
    `MIN_REGION_PIXELS` would be left). Sums run over every pixel with the others zeroed, which adds
    in the same order as over the kept pixels alone, so each row equals the per-crop computation.
    """
    n, depth = len(planes), planes.shape[-1]
    r0, r1, c0, c1 = REGIONS[region]
    rows, cols = slice(int(r0 * SIDE), int(r1 * SIDE)), slice(int(c0 * SIDE), int(c1 * SIDE))
    part = planes[:, rows, cols].reshape(n, -1, depth)
    keep = ~field[:, rows, cols].reshape(n, -1)
    keep |= (keep.sum(axis=1) < MIN_REGION_PIXELS)[:, None]
    k = keep.sum(axis=1)
    mean = _mean_as_numpy(np.where(keep[..., None], part, np.float32(0)).sum(axis=1), k[:, None])
    diff = part - mean[:, None, :]
    spread = np.sqrt(_mean_as_numpy(np.where(keep[..., None], diff * diff, np.float32(0)).sum(axis=1), k[:, None]))
    lum, a, b, hue, sat, val, chroma = np.moveaxis(part, -1, 0)
    # Percentiles: the kept values sorted first, the rest (+inf) after them.
    ordered = np.sort(np.where(keep[:, None], np.stack([lum, a, b, chroma], axis=1), np.float32(np.inf)), axis=2)
    pcts = _percentiles(ordered, _PCTS, k[:, None]).reshape(n, -1)
    weight = keep.astype(np.float64)
    hue_hist = _histograms(
        np.minimum((hue * REGION_HUE_BINS).astype(int), REGION_HUE_BINS - 1), REGION_HUE_BINS, (sat * val) * keep
    )
    hue_hist = hue_hist / np.maximum(hue_hist.sum(axis=1), 1e-6)[:, None]
    l_hist = _histograms(np.minimum((lum * REGION_L_BINS).astype(int), REGION_L_BINS - 1), REGION_L_BINS, weight)
    ai = np.clip(((a + 0.3) / 0.6 * REGION_AB_BINS).astype(int), 0, REGION_AB_BINS - 1)
    bi = np.clip(((b + 0.3) / 0.6 * REGION_AB_BINS).astype(int), 0, REGION_AB_BINS - 1)
    ab_hist = _histograms(ai * REGION_AB_BINS + bi, REGION_AB_BINS**2, weight)
    kf = k.astype(np.float64)[:, None]
    shares = (
        np.stack(
            [
                ((chroma < 0.08) & keep).sum(axis=1),
                ((val < 0.2) & keep).sum(axis=1),
                ((val > 0.8) & (sat < 0.15) & keep).sum(axis=1),
            ],
            axis=1,
        )
        / kf
    )
    median, top = _percentiles(ordered[:, 0], (50, 90), k).T
    # The tails' means add the chosen pixels pairwise, as numpy does over a compacted array: per crop.
    tails = np.zeros((n, 6), np.float32)
    for i in range(n):
        kept = keep[i]
        li, ai_, bi_ = lum[i][kept], a[i][kept], b[i][kept]
        dark, bright = li <= median[i], li >= top[i]
        tails[i] = [
            li[dark].mean(),
            ai_[dark].mean(),
            bi_[dark].mean(),
            li[bright].mean(),
            ai_[bright].mean(),
            bi_[bright].mean(),
        ]
    means = mean[:, [0, 1, 2, 4, 5, 6]]
    spreads = spread[:, [0, 1, 2, 4, 5]]
    return np.concatenate(
        [means, spreads, pcts, hue_hist, l_hist / kf, ab_hist / kf, shares, tails], axis=1, dtype=np.float64
    ).astype(np.float32)


def gray_world_balance(small: RGBArray, low: float = 0.6, high: float = 1.6) -> RGBArray:
    """The crop with each channel scaled so that its shades-of-grey (p=2) mean becomes neutral.

    Warm evening light makes silver read brown and shade makes white read blue-grey; the cast lies
    on the whole crop (body, road, background), so dividing out the crop's own mean color removes
    most of it. Clipped and near-black pixels say nothing about the light and are left out of the
    estimate; the gains are clamped, so a strongly colored car keeps much of its color (the plain
    statistics and the crop head still see the raw pixels).
    """
    return _gray_world_balance_many(small[None], low, high)[0]


def _gray_world_balance_many(stack: NDArray[np.uint8], low: float = 0.6, high: float = 1.6) -> NDArray[np.uint8]:
    n = len(stack)
    r, g, b = stack[..., 0], stack[..., 1], stack[..., 2]
    lit = _rows((np.maximum(np.maximum(r, g), b) < 250) & (np.minimum(np.minimum(r, g), b) > 8))
    weight = np.where((lit.sum(axis=1) >= 20)[:, None], lit, True).astype(np.float32)
    px = stack.reshape(n, -1, 3).astype(np.float32)
    squares = px * px
    # One matrix-vector product per crop: the same BLAS call (and sums) as for the crop alone.
    light = (
        np.sqrt(np.stack([w @ sq for w, sq in zip(weight, squares, strict=True)]) / weight.sum(axis=1)[:, None]) + 1.0
    )
    gains = np.clip(light.mean(axis=1)[:, None] / light, low, high).astype(np.float32)
    # One lookup table per channel and crop: the same numbers as scaling every pixel, at a fraction
    # of the cost (cv2.LUT per crop: a few microseconds, less than one gather over the stack).
    tables = np.clip(np.arange(256, dtype=np.float32)[None, :, None] * gains[:, None, :], 0, 255).astype(np.uint8)
    out = np.empty_like(stack)
    for i in range(n):
        cv2.LUT(np.ascontiguousarray(stack[i]), tables[i].reshape(256, 1, 3), dst=out[i])
    return out


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
    return region_statistics_many([small], regions)[0]


def region_statistics_many(smalls: Sequence[RGBArray], regions: tuple[str, ...] | list[str]) -> NDArray[np.float32]:
    """`region_statistics` of each crop's `small_copy`, `(N, REGION_SIGNALS * len(regions))`."""
    parsed = [split_region(r) for r in regions]
    s = _stack(smalls)
    if not parsed or len(s) == 0:
        return np.zeros((len(s), REGION_SIGNALS * len(parsed)), dtype=np.float32)
    field = _studio_fields(s)
    views = {balanced for _, balanced in parsed}  # compute only the planes that are read
    planes = {balanced: _planes_many(_gray_world_balance_many(s) if balanced else s) for balanced in views}
    return np.concatenate([_region_stats(planes[balanced], field, region) for region, balanced in parsed], axis=1)


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
    lo = channel_min(small)
    white = lo >= WHITE
    w = 3
    sides = [white[:w].mean(), white[-w:].mean(), white[:, :w].mean(), white[:, -w:].mean()]
    n, labels = cv2.connectedComponents(white.astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    field = float(np.isin(labels, edge).mean()) if n > 1 and edge.size else 0.0
    border = _border(small[None].astype(np.float32), w)[0]
    neutral = float(((border.min(axis=1) >= 200) & (np.ptp(border, axis=1) < 14)).mean())
    rows, cols = np.flatnonzero((~white).any(axis=1)), np.flatnonzero((~white).any(axis=0))
    extent = (rows.size and cols.size) and (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) / white.size
    return np.array([*sides, field, neutral, float(extent)], dtype=np.float32)
