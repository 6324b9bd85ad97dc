"""`train.generate`: placeholder graphics and rare-color recoloring, deterministic for a seed."""

from __future__ import annotations

import colorsys
import random
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from lotlens.train.generate import KINDS, RECOLOR, car_icon, emblem, placeholders, recolor


@pytest.fixture(scope="module")
def sample() -> list[tuple[str, np.ndarray]]:
    return placeholders(30, seed=5)


def test_placeholders_are_n_rgb_arrays(sample: list[tuple[str, np.ndarray]]) -> None:
    assert len(sample) == 30
    for kind, arr in sample:
        assert kind in KINDS
        assert arr.dtype == np.uint8
        assert arr.ndim == 3
        assert arr.shape[2] == 3
        assert min(arr.shape[:2]) >= 200


def test_placeholders_cover_every_kind(sample: list[tuple[str, np.ndarray]]) -> None:
    assert {kind for kind, _ in sample} == set(KINDS)


def test_placeholders_are_not_all_blank(sample: list[tuple[str, np.ndarray]]) -> None:
    drawn = [arr for kind, arr in sample if kind in ("banner", "logo", "silhouettes", "size_box")]
    assert drawn
    assert all(int(arr.max()) - int(arr.min()) > 30 for arr in drawn)  # text or shapes on a field


def test_placeholders_are_deterministic_per_seed(sample: list[tuple[str, np.ndarray]]) -> None:
    again = placeholders(30, seed=5)
    assert [k for k, _ in again] == [k for k, _ in sample]
    for (_, a), (_, b) in zip(again, sample, strict=True):
        np.testing.assert_array_equal(a, b)


def test_placeholders_differ_between_seeds(sample: list[tuple[str, np.ndarray]]) -> None:
    other = placeholders(5, seed=6)
    assert any(a.shape != b.shape or not np.array_equal(a, b) for (_, a), (_, b) in zip(other, sample[:5], strict=True))


def test_a_prefix_of_the_same_seed_is_the_same_images(sample: list[tuple[str, np.ndarray]]) -> None:
    for (ka, a), (kb, b) in zip(placeholders(3, seed=5), sample[:3], strict=True):
        assert ka == kb
        np.testing.assert_array_equal(a, b)


def test_zero_placeholders() -> None:
    assert placeholders(0, seed=1) == []


def _ink_share(arr: np.ndarray) -> tuple[float, float]:
    """(share of the pixels that differ from the top-left field, mean saturation of those pixels)."""
    diff = np.abs(arr.astype(int) - arr[0, 0].astype(int)).sum(axis=2) > 60
    rgb = arr[diff].astype(float)
    sat = (rgb.max(axis=1) - rgb.min(axis=1)) / np.maximum(rgb.max(axis=1), 1)
    return float(diff.mean()), float(sat.mean()) if len(rgb) else 0.0


@pytest.mark.parametrize("kind", [car_icon, emblem])
def test_car_graphics_draw_a_vehicle_in_any_hue(kind: Callable[[random.Random], Image.Image]) -> None:
    """Dealers' placeholder icons are blue, red, green as often as grey: the generated ones too."""
    drawn = [_ink_share(np.asarray(kind(random.Random(seed)).convert("RGB"))) for seed in range(24)]
    assert all(share > 0.02 for share, _ in drawn)  # something is drawn on every field
    assert sum(sat > 0.4 for _, sat in drawn) >= 6  # in a saturated hue in a good share of them
    assert sum(sat < 0.15 for _, sat in drawn) >= 2  # and grey or black in some


# ---------------------------------------------------------------------------------------------- recolor

RED, GREY, WHITE, BLACK = (200, 20, 25), (128, 128, 128), (255, 255, 255), (0, 0, 0)


def red_car_on_white() -> np.ndarray:
    """A red 'body', a grey 'window', a black 'tyre' on a white field."""
    arr = np.zeros((40, 60, 3), dtype=np.uint8)
    arr[:] = WHITE
    arr[10:30, 5:55] = RED
    arr[12:18, 20:40] = GREY
    arr[25:35, 10:18] = BLACK
    return arr


def hue_degrees(pixel: np.ndarray) -> float:
    r, g, b = (float(c) / 255 for c in pixel)
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


def hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


@pytest.mark.parametrize("target", sorted(RECOLOR))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recolor_moves_the_paint_hue_into_the_target_range(target: str, seed: int) -> None:
    src = red_car_on_white()
    out = recolor(src, target, random.Random(seed))
    assert out.shape == src.shape
    assert out.dtype == np.uint8
    (h0, h1), _, _ = RECOLOR[target]
    hue = hue_degrees(out[20, 8])
    # The target range, plus the +-3/256 turn (4.2 degrees) of jitter and 8-bit rounding.
    assert h0 - 6 <= hue <= h1 + 6
    assert (out[10:24, 5:20] == out[20, 8]).all()  # one hue for the whole body


@pytest.mark.parametrize("seed", range(8))
def test_recolor_purple_is_purple(seed: int) -> None:
    """Violet to magenta: purple car paint runs from blue-violet (most of the purple cars in
    ../shared/data) to the reddish plums."""
    out = recolor(red_car_on_white(), "Purple", random.Random(seed))
    r, g, b = (int(c) for c in out[20, 8])
    assert b > g
    assert r > g
    assert 244 <= hue_degrees(out[20, 8]) <= 301
    assert hue_distance(hue_degrees(out[20, 8]), 0) > 55  # no longer red


def test_recolor_leaves_grey_white_and_black_alone() -> None:
    src = red_car_on_white()
    out = recolor(src, "Purple", random.Random(0))
    paint = (src == RED).all(axis=2)
    np.testing.assert_array_equal(out[~paint], src[~paint])
    assert not (out[paint] == RED).all(axis=1).any()


def test_recolor_leaves_pale_and_dark_pixels_alone() -> None:
    arr = np.array([[[200, 180, 180], [30, 5, 5]]], dtype=np.uint8)  # saturation < 0.25; value < 0.12
    out = recolor(arr, "Orange", random.Random(0))
    assert np.abs(out.astype(int) - arr).max() <= 2  # only the HSV round trip's rounding


def test_recolor_is_deterministic_for_a_seed() -> None:
    src = red_car_on_white()
    a = recolor(src, "Pink", random.Random(3))
    np.testing.assert_array_equal(a, recolor(src, "Pink", random.Random(3)))
    assert not np.array_equal(a, recolor(src, "Pink", random.Random(4)))


def test_recolor_does_not_change_its_input() -> None:
    src = red_car_on_white()
    before = src.copy()
    recolor(src, "Burgundy", random.Random(0))
    np.testing.assert_array_equal(src, before)


def test_recolor_unknown_target() -> None:
    with pytest.raises(KeyError):
        recolor(red_car_on_white(), "Teal", random.Random(0))
