"""Small synthetic vehicle images for fast tests (studio shots on white, "photos" on texture), and
model variants for registry tests."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lotlens.train.generate import placeholders

SET_COLORS = ("Red", "Blue", "Yellow", "Black")
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
    if background == "white":  # a studio render: lit from above, a soft shadow on the floor
        arr = np.asarray(im, dtype=np.float32)
        body = (arr < 250).any(axis=2, keepdims=True)
        light = np.linspace(1.15, 0.8, h, dtype=np.float32)[:, None, None]
        arr = np.where(body, np.clip(arr * light, 0, 255), arr)
        yy, xx = np.mgrid[0:h, 0:w]
        shadow = np.exp(-(((xx - (x0 + x1) / 2) / ((x1 - x0) * 0.55)) ** 2) - ((yy - y1 - 20) / 8.0) ** 2)
        arr = np.where(body, arr, arr * (1 - 0.35 * shadow[..., None]))
        im = Image.fromarray(arr.astype(np.uint8))
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


def make_set(root: Path, name: str, seed: int, per_class: int, splits: dict[str, str] | None = None) -> Path:
    """Stock cars on white, Dealer cars in scenes, generated placeholders; groups like advertisers."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(per_class):
        color = SET_COLORS[i % len(SET_COLORS)]
        for type_, bg in (("Stock", "white"), ("Dealer", "scene")):
            path = f"img/{name}-{type_}-{i}.jpg"
            (root / path).write_bytes(jpeg(car(color, bg, seed * 1000 + i)))
            rows.append([path, type_, color, f"adv{i % 3}", (splits or {}).get(f"adv{i % 3}", "")])
    for i, (_, im) in enumerate(placeholders(per_class, seed=seed + 77)):
        path = f"img/{name}-ph-{i}.png"
        Image.fromarray(im).save(root / path)
        rows.append([path, "Placeholder", "", f"adv{i % 3}", (splits or {}).get(f"adv{i % 3}", "")])
    rows.append([f"img/{name}-broken.jpg", "Dealer", "Red", "adv0", ""])
    (root / f"img/{name}-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    manifest = root / f"{name}.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "type", "color", "group", "split"])
        w.writerows(rows)
    return manifest
