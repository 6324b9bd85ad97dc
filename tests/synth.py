"""Small synthetic vehicle images for fast tests (studio shots on white, "photos" on texture), and
model variants for registry tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PAINT = {
    "Red": (200, 20, 25),
    "Blue": (25, 50, 190),
    "Yellow": (235, 205, 20),
    "Green": (30, 150, 50),
    "Black": (20, 20, 22),
    "White": (245, 245, 245),
}


def car(color: str, background: str, seed: int, size: tuple[int, int] = (320, 220)) -> Image.Image:
    """A side-view car body in `color` on a white field ("white") or a noisy scene ("scene")."""
    rng = np.random.default_rng(seed)
    w, h = size
    if background == "white":
        im = Image.new("RGB", size, (255, 255, 255))
    else:
        base = rng.integers(40, 200, 3)
        noise = rng.normal(0, 35, (h, w, 3)) + base
        noise[: h // 2] += 30  # a brighter "sky"
        im = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    x0, y0 = int(w * rng.uniform(0.12, 0.2)), int(h * rng.uniform(0.35, 0.45))
    x1, y1 = int(w * rng.uniform(0.8, 0.88)), int(h * 0.75)
    paint = tuple(int(np.clip(c + rng.integers(-12, 12), 0, 255)) for c in PAINT[color])
    d.rounded_rectangle([x0, y0, x1, y1], radius=12, fill=paint, outline=(90, 90, 90))
    d.polygon([(x0 + 40, y0), (x0 + 70, y0 - 40), (x1 - 70, y0 - 40), (x1 - 40, y0)], fill=paint)
    d.polygon([(x0 + 55, y0), (x0 + 78, y0 - 30), (x1 - 78, y0 - 30), (x1 - 55, y0)], fill=(60, 70, 80))
    for cx in (x0 + 45, x1 - 45):
        d.ellipse([cx - 22, y1 - 22, cx + 22, y1 + 22], fill=(15, 15, 15))
    return im


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def variant(tmp_path: Path, name: str, threshold: float) -> Path:
    """A second real model: the bundled heads with another placeholder threshold and version."""
    from lotlens.vision.pipeline import ModelFolder, default_model_dir

    folder = ModelFolder.read(default_model_dir())
    folder.meta = json.loads(json.dumps(folder.meta))
    folder.meta["decision"]["placeholder_threshold"] = threshold
    folder.meta["version"] = name
    out = tmp_path / name
    folder.write(out)
    return out
