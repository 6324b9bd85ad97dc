"""The review pages' test site: keys per role, generated photos and placeholders served by the local
CDN and classified by the real service over a pipeline whose answers the test sets, and helpers to
sign in through the form. Nothing here needs ../shared."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from fastapi.testclient import TestClient

from lotlens.config import ApiKey, Settings
from lotlens.imaging import RGBArray
from lotlens.service import Item, Service
from lotlens.store import Store
from lotlens.vision import Pipeline

from fakes import FakePipeline, by_dominant_channel
from httpserver import IMAGES
from synth import car, jpeg

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "screenshots"
# axe-core, the npm package, installed at test time into build/ (ignored by git), never vendored.
AXE_VERSION = "4.11.0"
AXE_DIR = REPO / "build" / "axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("LOTLENS_CHROMIUM", "/usr/bin/chromium")
# Debian's Chromium as root, on a machine without internet: no sandbox, no GPU, no background calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

KEYS = {
    "staff": ApiKey(name="ana (staff)", key="t" * 32, role="staff"),
    "admin": ApiKey(name="root (admin)", key="r" * 32, role="admin"),
    "a": ApiKey(name="dealer-a", key="a" * 32, role="advertiser:a"),
    "b": ApiKey(name="dealer-b", key="b" * 32, role="advertiser:b"),
}


@dataclass
class Site:
    settings: Settings
    store: Store
    pipeline: Pipeline
    keys: dict[str, str]  # a's image keys by name: car0.., ph0.. (placeholders)
    cdn: str


def _generated_images() -> dict[str, bytes]:
    """Five vehicle photos (three on a scene: Dealer; two on white: Stock) and three grey
    "photo coming soon" graphics (Placeholder), as `scripted` answers them."""
    from PIL import Image, ImageDraw

    out = {f"car{i}": jpeg(car(c, bg, 100 + i)) for i, (c, bg) in enumerate(
        [("Red", "scene"), ("Blue", "scene"), ("Yellow", "scene"), ("Green", "white"), ("Black", "white")]
    )}  # fmt: skip
    for i in range(3):
        im = Image.new("L", (320 + 40 * i, 240), 200 + 10 * i)
        ImageDraw.Draw(im).text((40, 100), f"PHOTO COMING SOON {i}", fill=90)
        out[f"ph{i}"] = jpeg(im.convert("RGB"))
    return out


def scripted(image: RGBArray) -> tuple[str, str | None]:
    """The test's own model: grey pictures are placeholders, a white border is a studio shot, the
    paint is the strongest channel."""
    f = image.astype(np.int16)
    if np.abs(f[..., 0] - f[..., 1]).max() < 12 and np.abs(f[..., 1] - f[..., 2]).max() < 12:
        return "Placeholder", None
    border = np.concatenate([f[:3].reshape(-1, 3), f[-3:].reshape(-1, 3)])
    type_ = "Stock" if (border.min(axis=1) > 230).mean() > 0.9 else "Dealer"
    return type_, by_dominant_channel(image)[1]


class ScriptedPipeline(FakePipeline):
    """`scripted`'s answers, with a crop box around the middle of each photo (where `synth.car`
    draws the car) instead of the whole picture, so the image page has a box worth drawing."""

    def classify(self, images: Any, with_color: Any = None) -> list[Any]:
        out = super().classify(images, with_color)
        for i, (image, pred) in enumerate(zip(images, out, strict=True)):
            if pred.box is not None:
                h, w = image.shape[:2]
                out[i] = replace(pred, box=(w // 8, h // 5, w - w // 8, h - h // 10), box_source="detector")
        return out


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own: Playwright's sync API keeps a loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def seed(settings: Settings, store: Store, cdn: str) -> dict[str, str]:
    """Advertiser a: five vehicle photos, three placeholders and a dead link; b: one shared image and one
    of its own. Served by the local CDN and classified by the real service, so the store holds what
    production would, with the answers `scripted` gives."""
    pipeline = ScriptedPipeline(scripted, version="scripted-1")
    for name, data in _generated_images().items():
        IMAGES[f"web-{name}"] = data
    names = {n: f"{cdn}/img/a/{n}.jpg?name=web-{n}" for n in [f"car{i}" for i in range(5)] + ["ph0", "ph1", "ph2"]}
    items = [Item(url, vehicle_id=f"veh-{n}") for n, url in names.items()] + [Item(f"{cdn}/missing.jpg", "veh-x")]
    service = Service(settings, store, lambda: pipeline)  # type: ignore[arg-type,return-value]
    results = _run(service.classify("a", items))
    keys = {n: r.image_key for n, r in zip(names, results, strict=False) if r.image_key}
    assert len(keys) == len(names), [r.reason for r in results]
    assert results[-1].status == "skipped"
    placeholders = [n for n in keys if store.answers([keys[n]], "a")[keys[n]].type == "Placeholder"]
    assert sorted(placeholders) == ["ph0", "ph1", "ph2"]
    b_items = [Item(f"{cdn}/img/b/shared.jpg?name=web-car0"), Item(f"{cdn}/img/b/own.jpg?name=car")]
    _run(service.classify("b", b_items))
    return keys


def sign_in(client: TestClient, who: str) -> None:
    """Sign in through the form, as a browser does (its own CSRF cookie included)."""
    client.cookies.clear()
    client.get("/signin")
    token = client.cookies.get("lotlens_signin")
    res = client.post("/signin", data={"key": KEYS[who].key, "csrf": token, "next": "/"}, follow_redirects=False)
    assert res.status_code == 303, res.text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def axe_violations(page: Any, axe_source: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations (WCAG 2.1 A/AA and best practice) on the page as
    shown. The script is evaluated through the DevTools protocol, so the site's CSP stays on."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    result = page.evaluate(
        """async () => (await axe.run(document, {
            runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
            resultTypes: ["violations"],
        })).violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                   nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]
