"""`imaging`: every decode path ends in an (H, W, 3) uint8 RGB array or an `ImageDecodeError` reason.

All images are made here with Pillow, in memory.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lotlens.errors import ImageDecodeError
from lotlens.imaging import MODEL_SIDE, MemoryBudget, crop, decode, expand_box, resize, thumbnail_jpeg

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def rgb(data: bytes, **kwargs: object) -> np.ndarray:
    """Decode and check the contract every path shares."""
    arr = decode(data, **kwargs)  # type: ignore[arg-type]
    assert arr.dtype == np.uint8
    assert arr.ndim == 3
    assert arr.shape[2] == 3
    return arr


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def reason(data: bytes, **kwargs: object) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode(data, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` 1-bit pixels (no real pixel data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------- formats


def test_jpeg_decodes_to_its_colours() -> None:
    arr = rgb(encode(Image.new("RGB", (64, 48), (200, 30, 40)), "JPEG", quality=95))
    assert arr.shape == (48, 64, 3)
    assert np.abs(arr.astype(int) - (200, 30, 40)).max() <= 3


def test_png_round_trips_exactly() -> None:
    pixels = noise(30, 50)
    arr = rgb(encode(Image.fromarray(pixels), "PNG"))
    np.testing.assert_array_equal(arr, pixels)


def test_result_is_writable_and_owns_its_memory() -> None:
    arr = rgb(encode(Image.fromarray(noise(8, 8)), "PNG"))
    assert arr.flags.writeable
    arr[0, 0] = 0  # callers may draw on it


def test_webp_lossless() -> None:
    pixels = noise(20, 30, seed=3)
    np.testing.assert_array_equal(rgb(encode(Image.fromarray(pixels), "WEBP", lossless=True)), pixels)


def test_cmyk_jpeg_becomes_rgb() -> None:
    arr = rgb(encode(Image.new("CMYK", (16, 12), (0, 255, 255, 0)), "JPEG", quality=95))
    assert arr.shape == (12, 16, 3)
    assert np.abs(arr.astype(int) - RED).max() <= 3


def test_grey_l_is_repeated_on_three_channels() -> None:
    grey = np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5)
    arr = rgb(encode(Image.fromarray(grey, "L"), "PNG"))
    for c in range(3):
        np.testing.assert_array_equal(arr[:, :, c], grey)


def test_one_bit_image_is_black_and_white() -> None:
    im = Image.new("1", (4, 2), 0)
    im.putpixel((1, 0), 1)
    arr = rgb(encode(im, "PNG"))
    assert tuple(arr[0, 1]) == WHITE
    assert tuple(arr[0, 0]) == (0, 0, 0)
    assert int(arr.sum()) == 3 * 255


# ---------------------------------------------------------------------------------------------- orientation


def half_red_half_blue(width: int = 60, height: int = 40) -> Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2 :] = BLUE
    return Image.fromarray(pixels)


def with_orientation(im: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def is_close(pixel: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool(np.abs(pixel.astype(int) - colour).max() <= 5)


def test_exif_orientation_1_keeps_the_picture() -> None:
    arr = rgb(with_orientation(half_red_half_blue(), 1))
    assert arr.shape == (40, 60, 3)
    assert is_close(arr[20, 5], RED)
    assert is_close(arr[20, 55], BLUE)


def test_exif_orientation_3_turns_it_upside_down() -> None:
    arr = rgb(with_orientation(half_red_half_blue(), 3))
    assert arr.shape == (40, 60, 3)
    assert is_close(arr[20, 5], BLUE)
    assert is_close(arr[20, 55], RED)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_6_rotates_clockwise(fmt: str) -> None:
    # Stored 60 wide x 40 high; shown rotated 90 degrees clockwise: the left (red) half goes on top.
    arr = rgb(with_orientation(half_red_half_blue(), 6, fmt))
    assert arr.shape == (60, 40, 3)
    assert is_close(arr[5, 20], RED)
    assert is_close(arr[55, 20], BLUE)


def test_exif_orientation_8_rotates_counter_clockwise() -> None:
    arr = rgb(with_orientation(half_red_half_blue(), 8))
    assert arr.shape == (60, 40, 3)
    assert is_close(arr[5, 20], BLUE)
    assert is_close(arr[55, 20], RED)


def test_broken_exif_block_keeps_the_picture_and_warns_nothing() -> None:
    # An EXIF block cut short: Pillow warns "Corrupt EXIF data"; pytest turns warnings into errors.
    data = encode(Image.fromarray(noise(48, 64)), "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff")
    assert rgb(data).shape == (48, 64, 3)


# ---------------------------------------------------------------------------------------------- transparency


def test_rgba_transparency_is_composited_on_white() -> None:
    pixels = np.zeros((4, 3, 4), dtype=np.uint8)
    pixels[0] = (255, 0, 0, 255)  # opaque red
    pixels[1] = (0, 0, 0, 0)  # fully transparent black
    pixels[2] = (0, 0, 0, 128)  # half transparent black
    pixels[3] = (10, 20, 30, 0)  # fully transparent colour: the colour must not show
    arr = rgb(encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    assert tuple(arr[0, 0]) == RED
    assert tuple(arr[1, 0]) == WHITE
    assert np.abs(arr[2, 0].astype(int) - 127).max() <= 1
    assert tuple(arr[3, 0]) == WHITE


def test_la_transparency_is_composited_on_white() -> None:
    im = Image.new("LA", (2, 1), (50, 255))
    im.putpixel((1, 0), (0, 0))
    arr = rgb(encode(im, "PNG"))
    assert tuple(arr[0, 0]) == (50, 50, 50)
    assert tuple(arr[0, 1]) == WHITE


def test_la_with_premultiplied_alpha_tiff_is_composited_on_white() -> None:
    # Pillow writes LA TIFFs with ExtraSamples=2 (unassociated alpha); flip it to 1 (associated),
    # which Pillow opens in the premultiplied mode "La".
    data = encode(Image.new("LA", (4, 4), (50, 128)), "TIFF")
    entry = bytes.fromhex("5201030001000000")  # tag 338 ExtraSamples, SHORT, count 1 (little-endian)
    assert data.count(entry + b"\x02\x00") == 1
    data = data.replace(entry + b"\x02\x00", entry + b"\x01\x00")
    assert Image.open(io.BytesIO(data)).mode == "La"
    arr = rgb(data)
    # 50 premultiplied by 128/255 is a grey of ~99 at half opacity: on white, ~99/2 + 127.
    assert np.abs(arr.astype(int) - 177).max() <= 2


def palette_image() -> Image.Image:
    im = Image.new("P", (4, 1), 1)
    im.putpalette([0, 0, 0, 0, 255, 0, 255, 0, 0] + [0] * (256 - 3) * 3)
    im.putpixel((0, 0), 2)
    return im


def test_palette_without_transparency() -> None:
    arr = rgb(encode(palette_image(), "PNG"))
    assert tuple(arr[0, 0]) == RED
    assert tuple(arr[0, 3]) == (0, 255, 0)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_on_white(fmt: str) -> None:
    arr = rgb(encode(palette_image(), fmt, transparency=1))
    assert tuple(arr[0, 0]) == RED
    assert tuple(arr[0, 3]) == WHITE


@pytest.mark.parametrize("transparency", [1, bytes([255, 0, 128, 255])], ids=["key", "alpha-table"])
def test_big_palette_with_transparency_reduces_as_the_full_size_composite_does(transparency: object) -> None:
    # Converted to RGBA before reduce() (which premultiplies alpha), composited after: the same
    # picture as compositing at full size and reducing, within rounding, and no dark fringes.
    indices = np.random.default_rng(0).integers(0, 4, (1300, 1400), dtype=np.uint8)
    im = Image.fromarray(indices, "P")
    im.putpalette([0, 0, 0, 0, 255, 0, 255, 0, 0, 20, 40, 200] + [0] * (256 - 4) * 3)
    data = encode(im, "PNG", transparency=transparency)
    full = rgb(data, min_side=None)
    expected = np.asarray(Image.fromarray(full).reduce(4))
    arr = rgb(data, min_side=320)
    assert arr.shape == expected.shape == (325, 350, 3)
    assert np.abs(arr.astype(int) - expected).max() <= 2


def test_rgb_png_with_transparent_colour() -> None:
    pixels = np.zeros((1, 2, 3), dtype=np.uint8)
    pixels[0, 0] = (10, 20, 30)
    pixels[0, 1] = (0, 0, 255)
    arr = rgb(encode(Image.fromarray(pixels), "PNG", transparency=(10, 20, 30)))
    assert tuple(arr[0, 0]) == WHITE
    assert tuple(arr[0, 1]) == BLUE


def test_grey_png_with_transparent_level() -> None:
    grey = np.array([[7, 100]], dtype=np.uint8)
    arr = rgb(encode(Image.fromarray(grey, "L"), "PNG", transparency=7))
    assert tuple(arr[0, 0]) == WHITE
    assert tuple(arr[0, 1]) == (100, 100, 100)


# ---------------------------------------------------------------------------------------------- deep modes


def test_16_bit_grey_png_is_scaled_from_the_full_16_bit_range() -> None:
    values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    im = Image.fromarray(values)
    assert im.mode == "I;16"
    data = encode(im, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    arr = rgb(data)
    # A fixed 0..65535 scale, not stretched to the image's own range: 1000 stays nearly black.
    np.testing.assert_array_equal(arr[:, :, 0], [[0, 128], [255, 4]])
    np.testing.assert_array_equal(arr[:, :, 0], arr[:, :, 2])


def test_32_bit_integer_tiff_is_stretched_to_its_range() -> None:
    im = Image.fromarray(np.array([[-100, 0], [150, 300]], dtype=np.int32))
    assert im.mode == "I"
    arr = rgb(encode(im, "TIFF"))
    np.testing.assert_array_equal(arr[:, :, 1], [[0, 64], [159, 255]])


def test_float_tiff_is_stretched_to_its_range() -> None:
    im = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32))
    assert im.mode == "F"
    arr = rgb(encode(im, "TIFF"))
    np.testing.assert_array_equal(arr[:, :, 0], [[0, 128], [255, 64]])


def test_float_tiff_with_nan_and_inf_uses_the_finite_range() -> None:
    values = np.array([[0.0, np.nan], [np.inf, 2.0], [-np.inf, 1.0]], dtype=np.float32)
    arr = rgb(encode(Image.fromarray(values), "TIFF"))
    # NaN and -inf read as the lowest finite value, +inf as the highest; no "invalid value" warning.
    np.testing.assert_array_equal(arr[:, :, 0], [[0, 0], [255, 255], [0, 128]])


# ---------------------------------------------------------------------------------------------- animation


@pytest.mark.parametrize(("fmt", "params"), [("GIF", {}), ("PNG", {}), ("WEBP", {"lossless": True})])
def test_animated_image_gives_its_first_frame(fmt: str, params: dict[str, object]) -> None:
    frames = [Image.new("RGB", (12, 10), colour) for colour in (RED, BLUE, (0, 255, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **params)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    arr = rgb(data)
    assert arr.shape == (10, 12, 3)
    assert (arr == RED).all()


# ---------------------------------------------------------------------------------------------- draft


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return encode(Image.new("RGB", (4000, 3000), (10, 200, 30)), "JPEG", quality=90)


def test_big_jpeg_is_decoded_in_draft_mode(big_jpeg: bytes) -> None:
    arr = rgb(big_jpeg, min_side=320)
    h, w = arr.shape[:2]
    assert min(h, w) >= 320
    assert min(h, w) <= 750  # 1/4 or 1/8 scale, not 3000
    assert w / h == pytest.approx(4 / 3, rel=0.01)
    assert is_close(arr[h // 2, w // 2], (10, 200, 30))


def test_default_min_side_is_the_model_side(big_jpeg: bytes) -> None:
    assert rgb(big_jpeg).shape == rgb(big_jpeg, min_side=MODEL_SIDE).shape


def test_min_side_none_decodes_at_full_size(big_jpeg: bytes) -> None:
    assert rgb(big_jpeg, min_side=None).shape == (3000, 4000, 3)


def test_draft_never_goes_below_min_side() -> None:
    # 641 / 320 is just over 2: half size would still be >= 320 (321 px).
    data = encode(Image.new("RGB", (900, 641), (0, 0, 0)), "JPEG")
    h, w = rgb(data, min_side=320).shape[:2]
    assert min(h, w) >= 320
    assert (h, w) == (321, 450)


def test_small_jpeg_is_not_reduced() -> None:
    data = encode(Image.new("RGB", (600, 500), (0, 0, 0)), "JPEG")
    assert rgb(data, min_side=320).shape == (500, 600, 3)


def test_png_is_reduced_at_once_to_the_size_the_models_need() -> None:
    data = encode(Image.new("RGB", (1400, 1300), (0, 0, 0)), "PNG")
    assert rgb(data, min_side=320).shape == (325, 350, 3)  # an integer factor (4): shorter side >= 320
    assert rgb(data, min_side=None).shape == (1300, 1400, 3)


@pytest.mark.parametrize("mode", ["P", "L", "LA", "RGBA", "I;16"])
def test_every_mode_is_reduced(mode: str) -> None:
    data = encode(Image.new(mode, (1400, 1300)), "PNG")
    assert rgb(data, min_side=320).shape == (325, 350, 3)


def test_the_memory_budget_bounds_full_size_decodes_in_flight() -> None:
    import threading

    budget = MemoryBudget(60_000_000)
    data = encode(Image.new("RGB", (3000, 3000), (10, 20, 30)), "PNG")  # 3000*3000*4*2 = 72 MB asked
    threads = [threading.Thread(target=decode, args=(data,), kwargs={"budget": budget}) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.used == 0
    assert budget.peak <= budget.limit  # one at a time: a decode bigger than the budget waits alone


def test_draft_and_exif_orientation_together() -> None:
    data = with_orientation(half_red_half_blue(2400, 1600), 6)
    arr = rgb(data, min_side=320)
    h, w = arr.shape[:2]
    assert h > w  # rotated
    assert 320 <= w <= 800
    assert is_close(arr[h // 4, w // 2], RED)
    assert is_close(arr[3 * h // 4, w // 2], BLUE)


def test_mpo_jpeg_is_decoded_in_draft_mode_too() -> None:
    # Phones write JPEGs with extra pictures (MPO); Pillow reports their format as "MPO".
    first, second = Image.new("RGB", (2000, 1500), RED), Image.new("RGB", (2000, 1500), BLUE)
    data = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    arr = rgb(data, min_side=320)
    assert arr.shape == (375, 500, 3)
    assert is_close(arr[100, 100], RED)
    assert rgb(data, min_side=None).shape == (1500, 2000, 3)


# ---------------------------------------------------------------------------------------------- errors


def test_empty_bytes() -> None:
    assert reason(b"") == "empty"


@pytest.mark.parametrize("data", [b"<html>", b"<html><body>Not found</body></html>", b"\x00" * 100, b"GIF"])
def test_not_an_image(data: bytes) -> None:
    assert reason(data) == "not_an_image"


def test_header_declaring_more_than_max_pixels_is_refused() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert reason(data, max_pixels=9_999) == "too_many_pixels"
    assert rgb(data, max_pixels=10_000).shape == (100, 100, 3)  # the limit itself is allowed


def test_decompression_bomb_past_pillows_own_limit() -> None:
    data = png_header_only(20_000, 20_000)  # 400 Mpx in a few dozen bytes: Pillow refuses at open
    assert len(data) < 100
    assert reason(data) == "too_many_pixels"


def test_decompression_bomb_between_pillows_warning_and_ours() -> None:
    # 100 Mpx: past Pillow's warning threshold (89 Mpx, an error under pytest) and our 50 Mpx default.
    assert reason(png_header_only(10_000, 10_000)) == "too_many_pixels"


def test_refusal_comes_from_the_header_not_the_pixels() -> None:
    # The same header-only PNG under a higher limit gets as far as its (missing) pixels.
    assert reason(png_header_only(10_000, 10_000), max_pixels=100_000_001) == "truncated"


@pytest.fixture(scope="module")
def photo_jpeg() -> bytes:
    return encode(Image.fromarray(noise(240, 320, seed=7)), "JPEG", quality=90)


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9])
def test_jpeg_cut_in_its_pixel_data_is_truncated(photo_jpeg: bytes, keep: float) -> None:
    assert reason(photo_jpeg[: int(len(photo_jpeg) * keep)]) == "truncated"


@pytest.mark.parametrize("keep", [100, 300])
def test_jpeg_cut_in_its_header_is_truncated(photo_jpeg: bytes, keep: int) -> None:
    # Pillow raises "Truncated File Read" (capital T) while reading the header.
    assert reason(photo_jpeg[:keep]) == "truncated"


def test_truncated_png_is_truncated() -> None:
    data = encode(Image.fromarray(noise(100, 100)), "PNG")
    assert reason(data[: len(data) // 2]) == "truncated"


def test_damaged_compressed_data_is_corrupt() -> None:
    data = bytearray(encode(Image.fromarray(noise(64, 64)), "TIFF", compression="tiff_deflate"))
    data[200:400] = bytes(200)  # zero part of the deflate stream: a decoder error, not a short file
    assert reason(bytes(data)) == "corrupt"


def test_unconvertible_mode_is_unsupported_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every mode Pillow 13 opens converts to RGB; stand in for one that would not.
    real_convert = Image.Image.convert

    def convert(self: Image.Image, mode: str | None = None, *args: object, **kwargs: object) -> Image.Image:
        if self.mode == "L" and mode == "RGB":
            raise ValueError("conversion from L to RGB not supported")
        return real_convert(self, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "convert", convert)
    assert reason(encode(Image.new("L", (4, 4), 9), "PNG")) == "unsupported_mode"


def test_error_carries_reason_and_detail() -> None:
    with pytest.raises(ImageDecodeError, match="^too_many_pixels: 100x100 exceeds 5 pixels$") as info:
        decode(encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5)
    assert info.value.detail == "100x100 exceeds 5 pixels"


# ---------------------------------------------------------------------------------------------- resize


def test_resize_squashes_to_the_requested_size() -> None:
    arr = np.zeros((40, 100, 3), dtype=np.uint8)
    arr[:] = (30, 60, 90)
    out = resize(arr, 50, 80)
    assert out.shape == (80, 50, 3)
    assert out.dtype == np.uint8
    assert (out == (30, 60, 90)).all()


def test_resize_to_the_same_size_returns_the_input() -> None:
    arr = noise(10, 20)
    assert resize(arr, 20, 10) is arr


def test_resize_is_bilinear() -> None:
    arr = np.zeros((1, 2, 3), dtype=np.uint8)
    arr[0, 1] = 200
    out = resize(arr, 4, 1)
    # Bilinear upsampling ramps between the two pixels; nearest would only give 0 and 200.
    assert list(out[0, :, 0]) == sorted(out[0, :, 0])
    assert any(0 < v < 200 for v in out[0, :, 0])


# ---------------------------------------------------------------------------------------------- crop


def test_crop_inside_the_image() -> None:
    arr = noise(50, 80)
    out = crop(arr, (10, 5, 30, 25))
    assert out.shape == (20, 20, 3)
    np.testing.assert_array_equal(out, arr[5:25, 10:30])


def test_crop_is_clipped_to_the_image() -> None:
    arr = noise(50, 80)
    out = crop(arr, (-20, -10, 200, 30))
    np.testing.assert_array_equal(out, arr[0:30, 0:80])


def test_crop_of_an_empty_box_returns_the_whole_image() -> None:
    arr = noise(50, 80)
    assert crop(arr, (30, 10, 30, 40)) is arr
    assert crop(arr, (40, 10, 20, 40)) is arr


def test_crop_far_outside_keeps_at_least_one_pixel() -> None:
    arr = noise(50, 80)
    assert crop(arr, (500, 10, 600, 20)).shape == (10, 1, 3)
    assert crop(arr, (-50, -50, -10, -10)).shape == (1, 1, 3)


# ---------------------------------------------------------------------------------------------- expand_box


def test_expand_box_grows_by_margin_of_its_size() -> None:
    # 100 wide, 50 high: 10 px left/right, 5 px top/bottom.
    assert expand_box((100, 100, 200, 150), 0.1, 1000, 1000) == (90, 95, 210, 155)


def test_expand_box_is_clipped_to_the_image() -> None:
    assert expand_box((10, 5, 110, 55), 0.2, 120, 60) == (0, 0, 120, 60)


def test_expand_box_zero_margin_is_identity() -> None:
    assert expand_box((3, 4, 50, 60), 0.0, 100, 100) == (3, 4, 50, 60)


def test_thumbnail_is_a_small_upright_jpeg() -> None:
    im = Image.new("RGB", (1200, 600), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(buf.getvalue(), 160)))
    assert thumb.format == "JPEG"
    assert thumb.size == (80, 160)  # upright, longer side 160
    r, g, _b = thumb.convert("RGB").getpixel((40, 80))
    assert r > 150 > g


def test_thumbnail_keeps_the_decode_limits() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, "PNG")
    with pytest.raises(ImageDecodeError, match="too_many_pixels"):
        thumbnail_jpeg(buf.getvalue(), 160, max_pixels=5)
    with pytest.raises(ImageDecodeError):
        thumbnail_jpeg(b"not an image", 160)


def test_decoding_in_threads_leaves_the_warning_filters_as_they_were() -> None:
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 30)).save(buf, "JPEG")
    data = buf.getvalue()
    before = list(warnings.filters)
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda _: len(thumbnail_jpeg(data, 160)), range(200)))
    assert min(sizes) > 0
    assert warnings.filters == before
