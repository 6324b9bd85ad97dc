"""Bytes to RGB arrays, and the array operations the models need. Pure functions, no I/O.

Every decode path ends in an `(H, W, 3) uint8` RGB array: EXIF orientation applied, transparency
composited on white, palette/CMYK/16-bit/grey/animated inputs converted, JPEGs decoded in draft mode
straight to about the size the models need. Anything unusable raises `ImageDecodeError(reason)`.
"""

from __future__ import annotations

import io
import threading
import warnings

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from lotlens.errors import ImageDecodeError

RGBArray = NDArray[np.uint8]

DEFAULT_MAX_PIXELS = 50_000_000
# Every model input is at most 300 px a side (detector 300, backbone 224): decode to at least this.
MODEL_SIDE = 320
# catch_warnings swaps the process-wide filter list: one thread at a time may do it.
_QUIET = threading.Lock()


class MemoryBudget:
    """Bytes of full-size decodes allowed in flight at once, across threads (`LOTLENS_DECODE_MEMORY`).

    A decode asks for the bytes its full-size pixels need before decoding and gives them back once
    the picture is reduced; a picture bigger than the whole budget waits until it has it alone.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(self, n: int) -> int:
        n = min(n, self.limit)
        with self._cond:
            self._cond.wait_for(lambda: self.used + n <= self.limit)
            self.used += n
            self.peak = max(self.peak, self.used)
        return n

    def release(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


def decode(
    data: bytes,
    *,
    min_side: int | None = MODEL_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget: MemoryBudget | None = None,
) -> RGBArray:
    """Decode image bytes into an RGB array, no bigger than the models need.

    Args:
        data: the file's bytes.
        min_side: the shorter side the result keeps at least (None: full size). JPEGs decode with
            draft scaling (1/2, 1/4, 1/8) straight to about that size; other formats decode whole
            and are reduced by an integer factor at once, before the RGB copy is made.
        max_pixels: images whose header declares more pixels are refused before any pixel is
            decoded (decompression bombs).
        budget: bounds the full-size decodes in flight across threads (None: no bound).

    Raises:
        ImageDecodeError: reason `empty`, `not_an_image`, `too_many_pixels`, `truncated`,
            `unsupported_mode` or `corrupt`.
    """
    if not data:
        raise ImageDecodeError("empty", "no bytes")
    # Our own pixel limit is checked below, from the header; Pillow's global one would warn (and a
    # catch_warnings around every decode would serialise the decode threads).
    Image.MAX_IMAGE_PIXELS = None
    try:
        with _QUIET, warnings.catch_warnings():  # opening reads headers only: short
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_many_pixels", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not_an_image", "not a recognised image format") from exc
    except OSError as exc:
        raise ImageDecodeError(_os_error_reason(exc), str(exc)) from exc
    except (ValueError, SyntaxError) as exc:
        raise ImageDecodeError("corrupt", str(exc)) from exc
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("corrupt", f"bad size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError("too_many_pixels", f"{width}x{height} exceeds {max_pixels} pixels")
    # MPO: a JPEG with extra pictures (phone depth maps, stereo), decoded by the JPEG plugin.
    jpeg = im.format in ("JPEG", "MPO")
    if jpeg and min_side:
        scale = min(width, height) / min_side
        if scale >= 2:
            im.draft(None, (max(1, round(width / scale)), max(1, round(height / scale))))
    w, h = im.size  # after the draft
    held = budget.acquire(w * h * max(4, len(im.getbands())) * 2) if budget else 0
    try:
        try:
            im.seek(0)  # animated GIF/PNG/WebP: the first frame
            im.load()
            factor = min(w, h) // min_side if min_side else 1
            picture: Image.Image = im
            if factor >= 2 and im.mode in ("P", "1"):
                # reduce() does not take palette or bilevel pictures: convert them first (a palette's
                # transparency becomes alpha, which reduce() premultiplies), so the composite on white
                # and the RGB copy below are made at the reduced size, not the full one.
                mode = "L" if im.mode == "1" else ("RGBA" if "transparency" in im.info else "RGB")
                picture = im.convert(mode)
            if factor >= 2 and picture.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                reduced = picture.reduce(factor)  # box filter, at once: the full-size pixels go now
                reduced.info = dict(picture.info)  # EXIF orientation and transparency stay
                picture = reduced
                del im
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError("too_many_pixels", str(exc)) from exc
        except OSError as exc:
            raise ImageDecodeError(_os_error_reason(exc), str(exc)) from exc
        except (ValueError, SyntaxError, EOFError) as exc:
            raise ImageDecodeError("corrupt", str(exc)) from exc
        with _QUIET, warnings.catch_warnings():  # short: the picture is small by now
            # Pillow's complaints about damaged metadata ("Corrupt EXIF data"): the pixels count
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            out = _to_rgb(_orient(picture))
        del picture
        if min_side and min(out.shape[:2]) >= 2 * min_side:  # modes reduce() does not take
            out = _reduce_array(out, min(out.shape[:2]) // min_side)
        return out
    finally:
        if budget:
            budget.release(held)


def _reduce_array(arr: RGBArray, factor: int) -> RGBArray:
    im = Image.fromarray(arr).reduce(factor)
    return np.asarray(im, dtype=np.uint8)


def _os_error_reason(exc: OSError) -> str:
    # Pillow says "image file is truncated" in the pixel data, "Truncated File Read" in a JPEG header.
    msg = str(exc).lower()
    return "truncated" if "truncated" in msg or "broken data stream" in msg else "corrupt"


def _orient(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im) or im
    except (ValueError, TypeError, KeyError, OSError):
        return im  # a broken EXIF block is not a reason to lose the picture


def _to_rgb(im: Image.Image) -> RGBArray:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        finite = arr[np.isfinite(arr)]  # float TIFFs may hold NaN/inf ("no data")
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        grey = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    try:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("RGB", "L") and "transparency" in im.info):
            # Pillow converts premultiplied "La" (TIFF, associated alpha) only to "LA".
            rgba = (im.convert("LA") if mode == "La" else im).convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, rgba)
        rgb = im if im.mode == "RGB" else im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageDecodeError("unsupported_mode", f"cannot convert mode {mode}") from exc
    return np.array(rgb, dtype=np.uint8)  # a writable copy of its own


def resize(arr: RGBArray, width: int, height: int) -> RGBArray:
    """Resize (squash, no letterbox) with bilinear filtering, as the models were trained."""
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    im = Image.fromarray(arr).resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im, dtype=np.uint8)


def crop(arr: RGBArray, box: tuple[int, int, int, int]) -> RGBArray:
    """Return the pixels inside `box` = (x0, y0, x1, y1), clipped to the image."""
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = box
    x0, x1 = max(0, min(w - 1, x0)), max(1, min(w, x1))
    y0, y1 = max(0, min(h - 1, y0)), max(1, min(h, y1))
    if x1 <= x0 or y1 <= y0:
        return arr
    return arr[y0:y1, x0:x1]


def expand_box(box: tuple[int, int, int, int], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Grow `box` by `margin` of its size on every side, clipped to the image."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return (
        max(0, int(round(x0 - dx))),
        max(0, int(round(y0 - dy))),
        min(width, int(round(x1 + dx))),
        min(height, int(round(y1 + dy))),
    )


def thumbnail_jpeg(data: bytes, side: int, *, max_pixels: int = DEFAULT_MAX_PIXELS, quality: int = 82) -> bytes:
    """A JPEG at most `side` pixels on its longer side, for the review pages.

    Decodes through `decode`, so it keeps the same orientation, bomb limit and errors.
    """
    im = Image.fromarray(decode(data, min_side=side, max_pixels=max_pixels))
    im.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()
