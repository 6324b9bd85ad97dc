"""Training data that real inventories lack: placeholder graphics and rare vehicle colors.

Kept whole (about 460 lines): every placeholder kind draws with the same fields, inks, fonts and car
shapes from one seeded stream (`placeholders`), and the recoloring is the other half of what `train`
generates; a split would only pass those helpers back and forth. Deterministic for a seed.

The dev set has logos, grey size boxes and silhouettes but no text banners ("photo coming soon");
dealers' own placeholder icons (a car drawn in their brand color, their name under it) are few;
Purple, Burgundy, Pink and Orange vehicles are rare.
"""

from __future__ import annotations

import colorsys
import random
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from lotlens.imaging import RGBArray

BANNERS = (
    "PHOTO COMING SOON",
    "Photos coming soon",
    "IMAGE NOT AVAILABLE",
    "No image available",
    "ON ORDER",
    "IN TRANSIT",
    "Picture coming soon",
    "NO PHOTO",
    "Image coming soon",
    "More photos soon",
    "Awaiting photos",
    "Vehicle arriving soon",
    "SOLD",
    "Coming soon",
    "Photos to follow",
    "Call for pictures",
    "Incoming stock",
    "Image unavailable",
)
SIZES = ((640, 480), (800, 600), (1024, 768), (400, 300), (1280, 960), (600, 600), (320, 240), (1200, 800))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _field(rng: random.Random) -> tuple[int, int, int]:
    kind = rng.random()
    if kind < 0.45:
        v = rng.randint(225, 255)
        return (v, v, v)
    if kind < 0.7:
        v = rng.randint(60, 200)
        return (v, v, v)
    return _hsv255(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.95))


def _hsv255(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


def _ink(bg: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    lum = sum(bg) / 3
    if rng.random() < 0.25:
        return _hsv255(rng.random(), 0.8, 0.35 if lum > 128 else 0.95)
    v = rng.randint(20, 90) if lum > 128 else rng.randint(200, 255)
    return (v, v, v)


def _text_center(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill: tuple[int, int, int]
) -> None:
    draw.text(xy, text, fill=fill, font=_font(size), anchor="mm")


def _car_silhouette(
    draw: ImageDraw.ImageDraw, cx: float, cy: float, w: float, fill: tuple[int, int, int], rng: random.Random
) -> None:
    """A side-view car: body, cabin and two wheels, with a little random shape variety."""
    h = w * rng.uniform(0.28, 0.36)
    x0, y0 = cx - w / 2, cy - h / 2
    body_top = y0 + h * rng.uniform(0.38, 0.48)
    draw.rounded_rectangle([x0, body_top, x0 + w, y0 + h * 0.85], radius=int(h * 0.12), fill=fill)
    cab0, cab1 = x0 + w * rng.uniform(0.18, 0.3), x0 + w * rng.uniform(0.68, 0.8)
    draw.polygon(
        [(cab0, body_top), (cab0 + w * 0.1, y0), (cab1 - w * 0.06, y0), (cab1 + w * 0.06, body_top)], fill=fill
    )
    r = h * rng.uniform(0.17, 0.22)
    for wx in (x0 + w * 0.22, x0 + w * 0.78):
        draw.ellipse([wx - r, y0 + h * 0.85 - r, wx + r, y0 + h * 0.85 + r], fill=fill)


def banner(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    bg = _field(rng)
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    ink = _ink(bg, rng)
    text = rng.choice(BANNERS)
    if rng.random() < 0.5:
        text = text.upper()
    lines = text.split(" ", 1) if rng.random() < 0.4 and " " in text else [text]
    size = int(min(w / (max(len(s) for s in lines) * 0.62), h / 5))
    if rng.random() < 0.5:
        _car_silhouette(d, w / 2, h * 0.38, w * rng.uniform(0.35, 0.6), _ink(bg, rng), rng)
        y = h * 0.72
    elif rng.random() < 0.5:  # a camera icon
        cw = min(w, h) * 0.25
        d.rounded_rectangle(
            [w / 2 - cw, h * 0.2, w / 2 + cw, h * 0.2 + cw * 1.2],
            radius=int(cw / 5),
            outline=ink,
            width=max(2, int(cw / 12)),
        )
        d.ellipse(
            [w / 2 - cw / 2.5, h * 0.2 + cw * 0.2, w / 2 + cw / 2.5, h * 0.2 + cw],
            outline=ink,
            width=max(2, int(cw / 12)),
        )
        y = h * 0.75
    else:
        y = h / 2 - (len(lines) - 1) * size * 0.6
    for i, line in enumerate(lines):
        _text_center(d, (w / 2, y + i * size * 1.2), line, size, ink)
    if rng.random() < 0.3:
        d.rectangle([4, 4, w - 5, h - 5], outline=ink, width=rng.randint(2, 8))
    return im


def silhouettes(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    bg = _field(rng)
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    ink = _ink(bg, rng)
    n = rng.choice((1, 1, 2, 3, 4))  # several vehicles: must not be "rescued" into a photo
    for i in range(n):
        cw = w / (n + 0.4) * rng.uniform(0.7, 0.95)
        _car_silhouette(d, w * (i + 0.7) / (n + 0.4), h * rng.uniform(0.4, 0.6), cw, ink, rng)
    if rng.random() < 0.4:
        _text_center(d, (w / 2, h * 0.85), rng.choice(BANNERS), max(10, int(h / 14)), ink)
    return im


def logo(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    bg = _field(rng)
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    ink = _ink(bg, rng)
    r = min(w, h) * rng.uniform(0.15, 0.35)
    cx, cy = w / 2, h * rng.uniform(0.35, 0.5)
    shape = rng.choice(("circle", "shield", "oval", "diamond"))
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=max(3, int(r / 8)))
    elif shape == "oval":
        d.ellipse([cx - r * 1.6, cy - r * 0.8, cx + r * 1.6, cy + r * 0.8], fill=ink)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=ink)
    else:
        d.polygon([(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy), (cx, cy + r * 1.2), (cx - r, cy)], fill=ink)
    letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(rng.randint(1, 3)))
    inner = bg if shape in ("oval", "diamond", "shield") else ink
    _text_center(d, (cx, cy), letters, int(r * 0.8), inner)
    if rng.random() < 0.6:
        name = "".join(rng.choice("abcdefghijklmnoprstuvw") for _ in range(rng.randint(5, 10))).title()
        suffix = rng.choice(("Motors", "Auto Group", "Cars", "Automotive", "Dealership"))
        _text_center(d, (w / 2, cy + r * 1.6), f"{name} {suffix}", max(10, int(h / 14)), ink)
    return im


def size_box(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    v = rng.randint(170, 225)
    im = Image.new("RGB", (w, h), (v, v, v))
    d = ImageDraw.Draw(im)
    ink = (v - 60,) * 3
    if rng.random() < 0.5:
        d.line([(0, 0), (w, h)], fill=ink, width=2)
        d.line([(0, h), (w, 0)], fill=ink, width=2)
    _text_center(d, (w / 2, h / 2), f"{w}x{h}" if rng.random() < 0.7 else f"{w} × {h}", int(h / 8), ink)
    return im


def blank(rng: random.Random) -> Image.Image:
    w, h = rng.choice(SIZES)
    im = Image.new("RGB", (w, h), _field(rng))
    if rng.random() < 0.3:  # a soft gradient
        arr = np.asarray(im, dtype=np.float32)
        ramp = np.linspace(0.85, 1.1, h, dtype=np.float32)[:, None, None]
        im = Image.fromarray(np.clip(arr * ramp, 0, 255).astype(np.uint8))
    return im


# Side profiles of a few body styles, as (x, y) fractions of the body's box, front to the right:
# bottom of the rear bumper, up over the trunk, roof and hood, down to the front bumper.
PROFILES = {
    "sedan": [
        (0.0, 0.78),
        (0.0, 0.5),
        (0.06, 0.44),
        (0.24, 0.4),
        (0.33, 0.12),
        (0.42, 0.04),
        (0.62, 0.04),
        (0.72, 0.36),
        (0.93, 0.44),
        (1.0, 0.55),
        (1.0, 0.78),
    ],
    "suv": [(0.0, 0.8), (0.0, 0.12), (0.05, 0.02), (0.62, 0.02), (0.74, 0.3), (0.95, 0.38), (1.0, 0.5), (1.0, 0.8)],
    "hatch": [(0.0, 0.78), (0.0, 0.3), (0.08, 0.06), (0.55, 0.04), (0.7, 0.34), (0.93, 0.42), (1.0, 0.55), (1.0, 0.78)],
    "coupe": [
        (0.0, 0.78),
        (0.0, 0.5),
        (0.12, 0.4),
        (0.38, 0.08),
        (0.58, 0.06),
        (0.74, 0.38),
        (0.95, 0.46),
        (1.0, 0.58),
        (1.0, 0.78),
    ],
}
# The cabin's glass for each profile: the x range of the windows and their top and bottom.
GLASS = {
    "sedan": (0.3, 0.68, 0.1, 0.38),
    "suv": (0.06, 0.68, 0.06, 0.3),
    "hatch": (0.08, 0.64, 0.08, 0.34),
    "coupe": (0.36, 0.7, 0.11, 0.38),
}


# A color for `ImageDraw`: RGB on an image, one level on a mask.
Ink = tuple[int, int, int] | int


def _any_color(rng: random.Random, bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """An ink that stands out from `bg`: any hue (logo blues and reds as often as greys)."""
    for _ in range(8):
        if rng.random() < 0.35:
            v = rng.randint(15, 110) if sum(bg) > 384 else rng.randint(170, 255)
            ink = (v, v, v)
        else:
            ink = _hsv255(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.45, 1.0))
        if sum(abs(a - b) for a, b in zip(ink, bg, strict=True)) > 150:
            return ink
    return _ink(bg, rng)


def _car_icon(
    d: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    ink: Ink,
    bg: Ink,
    rng: random.Random,
    outline: bool,
) -> None:
    """A side-view car icon in `box`: a body style's profile, glass and wheels cut out in `bg`."""
    x0, y0, x1, y1 = box
    style = rng.choice(list(PROFILES))
    flip = rng.random() < 0.5

    def at(fx: float, fy: float) -> tuple[float, float]:
        return (x0 + (1 - fx if flip else fx) * (x1 - x0), y0 + fy * (y1 - y0))

    body = [at(fx + rng.uniform(-0.01, 0.01), fy + rng.uniform(-0.01, 0.01)) for fx, fy in PROFILES[style]]
    stroke = max(2, int((y1 - y0) / 16))
    if outline:
        d.line([*body, body[0]], fill=ink, width=stroke, joint="curve")
    else:
        d.polygon(body, fill=ink)
    g0, g1, gt, gb = GLASS[style]
    pillar = rng.uniform(0.45, 0.55)
    for a, b in ((g0, g0 + (g1 - g0) * pillar - 0.015), (g0 + (g1 - g0) * pillar + 0.015, g1)):
        pane = [at(a + 0.03, gt), at(b - 0.02, gt), at(b, gb), at(a, gb)]
        if outline:
            d.line([*pane, pane[0]], fill=ink, width=max(1, stroke // 2))
        elif rng.random() < 0.85:
            d.polygon(pane, fill=bg)
    r = (y1 - y0) * rng.uniform(0.15, 0.2)
    for fx in (0.2, 0.8):
        cx, cy = at(fx, 0.8)
        d.ellipse([cx - r * 1.2, cy - r * 1.2, cx + r * 1.2, cy + r * 1.2], fill=bg)  # the arch
        if outline:
            d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=stroke)
        else:
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=ink)
            if rng.random() < 0.7:  # the rim
                d.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=bg)


def _front_car(d: ImageDraw.ImageDraw, cx: float, cy: float, w: float, ink: Ink, bg: Ink) -> None:
    """A front view: body, windscreen, lamps and grille, as a dealer's logo draws one."""
    h = w * 0.6
    top, mid, bottom = cy - h / 2, cy, cy + h / 2
    d.polygon(
        [
            (cx - w * 0.32, top + h * 0.05),
            (cx + w * 0.32, top + h * 0.05),
            (cx + w * 0.42, mid),
            (cx + w / 2, mid + h * 0.08),
            (cx + w / 2, bottom),
            (cx - w / 2, bottom),
            (cx - w / 2, mid + h * 0.08),
            (cx - w * 0.42, mid),
        ],
        fill=ink,
    )
    d.polygon(
        [
            (cx - w * 0.27, top + h * 0.14),
            (cx + w * 0.27, top + h * 0.14),
            (cx + w * 0.35, mid - h * 0.02),
            (cx - w * 0.35, mid - h * 0.02),
        ],
        fill=bg,
    )
    for side in (-1, 1):
        lx = cx + side * w * 0.34
        d.ellipse([lx - w * 0.08, mid + h * 0.12, lx + w * 0.08, mid + h * 0.26], fill=bg)
    d.rounded_rectangle([cx - w * 0.18, mid + h * 0.14, cx + w * 0.18, mid + h * 0.3], radius=int(w * 0.02), fill=bg)


def _gradient_fill(im: Image.Image, mask: Image.Image, top: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """`im` with the pixels of `mask` painted by a vertical gradient from `top` to a darker shade."""
    w, h = im.size
    dark = rng.uniform(0.3, 0.7)
    ramp = np.linspace(1.0, dark, h, dtype=np.float32)[:, None, None] * np.asarray(top, dtype=np.float32)
    paint = np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)
    return Image.composite(Image.fromarray(paint), im, mask)


def car_icon(rng: random.Random) -> Image.Image:
    """A placeholder drawn as a car icon: a filled or outlined side view in any color, often with
    the dealer's name or a "no photo" line under it."""
    w, h = rng.choice(SIZES)
    bg = _field(rng) if rng.random() < 0.6 else (255, 255, 255)
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    ink = _any_color(rng, bg)
    cw = w * rng.uniform(0.55, 0.92)
    ch = cw * rng.uniform(0.3, 0.42)
    texted = rng.random() < 0.5
    cy = h * (0.42 if texted else rng.uniform(0.45, 0.55))
    _car_icon(d, (w / 2 - cw / 2, cy - ch / 2, w / 2 + cw / 2, cy + ch / 2), ink, bg, rng, rng.random() < 0.3)
    if texted:
        text = rng.choice(BANNERS) if rng.random() < 0.5 else _dealer_name(rng)
        _text_center(d, (w / 2, min(h * 0.9, cy + ch * 0.75)), text, max(10, int(min(h / 9, w / len(text) * 1.3))), ink)
    return im


def _dealer_name(rng: random.Random) -> str:
    name = "".join(rng.choice("ABCDEFGHIKLMNOPRSTUVWZ") for _ in range(rng.randint(4, 9)))
    return f"{name} {rng.choice(('MOTORS', 'AUTO', 'CARS', 'AUTO RENT', 'LIMITED', 'GARAGE'))}"


def emblem(rng: random.Random) -> Image.Image:
    """A dealer's logo on a dark or light field: a car front or side drawn in one color or a
    gradient, with the dealer's name in large letters."""
    w, h = rng.choice(SIZES)
    bg = (rng.randint(0, 40),) * 3 if rng.random() < 0.5 else _field(rng)
    im = Image.new("RGB", (w, h), bg)
    mask = Image.new("L", (w, h), 0)
    ink = _any_color(rng, bg)
    side = min(w, h)
    cw = side * rng.uniform(0.45, 0.75)
    if rng.random() < 0.5:
        _front_car(ImageDraw.Draw(mask), w / 2, h * 0.4, cw, 255, 0)
    else:
        ch = cw * 0.38
        _car_icon(
            ImageDraw.Draw(mask),
            (w / 2 - cw / 2, h * 0.4 - ch / 2, w / 2 + cw / 2, h * 0.4 + ch / 2),
            255,
            0,
            rng,
            rng.random() < 0.3,
        )
    if rng.random() < 0.5:
        im = _gradient_fill(im, mask, ink, rng)
    else:
        im.paste(ink, mask=mask)
    d = ImageDraw.Draw(im)
    text = _dealer_name(rng)
    words = text.split(" ", 1)
    size = max(12, int(min(w / (len(words[0]) * 0.7), h / 7)))
    text_ink = (255, 255, 255) if sum(bg) < 300 else _any_color(rng, bg)
    _text_center(d, (w / 2, h * 0.74), words[0], size, text_ink)
    if len(words) > 1:
        _text_center(d, (w / 2, h * 0.74 + size * 1.1), words[1], max(10, size // 2), ink)
    if rng.random() < 0.3:  # a few sparkles or stripes, as such logos have
        for _ in range(rng.randint(2, 6)):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h * 0.6), side * 0.015
            d.polygon([(x, y - r * 2), (x + r / 2, y), (x, y + r * 2), (x - r / 2, y)], fill=ink)
    return im


KINDS: dict[str, Callable[[random.Random], Image.Image]] = {
    "banner": banner,
    "silhouettes": silhouettes,
    "logo": logo,
    "size_box": size_box,
    "blank": blank,
    "car_icon": car_icon,
    "emblem": emblem,
}
WEIGHTS = {
    "banner": 0.3,
    "silhouettes": 0.15,
    "logo": 0.15,
    "size_box": 0.08,
    "blank": 0.08,
    "car_icon": 0.12,
    "emblem": 0.12,
}


def placeholders(n: int, seed: int = 0) -> list[tuple[str, RGBArray]]:
    """`n` placeholder graphics as (kind, RGB array), a few with JPEG-like blur or noise."""
    rng = random.Random(seed)
    kinds = list(WEIGHTS)
    out = []
    for _ in range(n):
        kind = rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
        im = KINDS[kind](rng)
        if rng.random() < 0.3:
            im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
        out.append((kind, np.asarray(im, dtype=np.uint8)))
    return out


# Target hue (degrees), saturation and value ranges (multipliers of the source pixel) per rare color.
# Purple spans blue-violet to plum: most purple cars in ../shared/data are violet (paint hue
# 250-270); a magenta-only range (265-295) taught the head to call them Blue or Pink.
RECOLOR = {
    "Purple": ((250, 295), (0.55, 1.0), (0.5, 0.9)),
    "Burgundy": ((335, 355), (0.75, 1.0), (0.35, 0.55)),
    "Pink": ((315, 345), (0.35, 0.6), (1.0, 1.3)),
    "Orange": ((18, 32), (0.9, 1.1), (0.95, 1.2)),
}
RECOLOR_SOURCES = ("Red", "Blue", "Green", "Yellow", "Orange", "Purple", "Burgundy", "Pink")


def recolor(crop: RGBArray, target: str, rng: random.Random) -> RGBArray:
    """Shift the hue of the vehicle's colored pixels to `target`; grey, black and white stay.

    Glass, tyres, chrome and a white studio field are unsaturated, so a saturation mask keeps the
    shift on the paint.
    """
    (h0, h1), (s0, s1), (v0, v1) = RECOLOR[target]
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    sat, val = hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    mask = (sat > 0.25) & (val > 0.12)
    hue = rng.uniform(h0, h1) / 360.0 * 256.0
    hsv[..., 0] = np.where(mask, (hue + rng.uniform(-3, 3)) % 256, hsv[..., 0])
    hsv[..., 1] = np.where(mask, np.clip(hsv[..., 1] * rng.uniform(s0, s1), 0, 255), hsv[..., 1])
    hsv[..., 2] = np.where(mask, np.clip(hsv[..., 2] * rng.uniform(v0, v1), 0, 255), hsv[..., 2])
    return np.asarray(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL), dtype=np.uint8)
