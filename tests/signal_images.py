"""Images that pin the hand-made signals' numbers (tests/data/signals_golden.npz).

The bundled heads were trained on these signals: a rewrite of them (batched, vectorised) must give
the same numbers. The golden file was written by the per-image code of 2026-12-04 (`write`), whose
numbers the bundled model was trained on.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from synth import car

GOLDEN = Path(__file__).parent / "data" / "signals_golden.npz"
REGIONS = ("band_wb", "center_wb", "band", "center")


def _jpeg_roundtrip(im: Image.Image, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def images() -> list[np.ndarray]:
    """Cars on white and in scenes (JPEG noise, odd sizes), noise, flat and nearly flat fields, a
    white car on white, a studio field whose region has too few pixels left."""
    rng = np.random.default_rng(7)
    out = []
    for i, (color, bg) in enumerate(
        [
            ("Red", "white"),
            ("Blue", "scene"),
            ("Yellow", "white"),
            ("Black", "scene"),
            ("Green", "scene"),
            ("White", "white"),
        ]
    ):
        size = [(320, 220), (500, 300), (211, 97), (64, 64), (90, 400), (640, 480)][i]
        out.append(_jpeg_roundtrip(car(color, bg, i, size=size), 70 + 5 * i))
    out.append(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8))
    out.append(np.full((100, 100, 3), 200, np.uint8))
    grad = np.linspace(0, 255, 300, dtype=np.float32)
    out.append(np.stack([np.tile(grad, (120, 1))] * 3, axis=-1).astype(np.uint8))
    studio = np.full((200, 300, 3), 255, np.uint8)
    studio[170:200, 100:200] = (30, 30, 120)  # a small object low on white: regions mostly field
    out.append(studio)
    warm = np.full((120, 200, 3), (120, 100, 80), np.uint8)
    warm[30:110, 10:190] = (200, 170, 140)
    out.append(warm)
    out.append(np.zeros((80, 60, 3), np.uint8))
    return out


def compute() -> dict[str, np.ndarray]:
    from lotlens.vision.signals import color_signals, region_statistics, small_copy, type_signals, white_background_box

    ims = images()
    smalls = [small_copy(im) for im in ims]
    boxes = [white_background_box(im, small=s) or (-1, -1, -1, -1) for im, s in zip(ims, smalls, strict=True)]
    return {
        "type": np.stack([type_signals(im, s) for im, s in zip(ims, smalls, strict=True)]),
        "color": np.stack([color_signals(s) for s in smalls]),
        "regions": np.stack([region_statistics(s, REGIONS) for s in smalls]),
        "white_box": np.array(boxes, dtype=np.int64),
    }


def write() -> None:
    np.savez_compressed(GOLDEN, **compute())


if __name__ == "__main__":
    write()
