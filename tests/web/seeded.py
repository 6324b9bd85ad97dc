"""The review pages' test site: keys per role, real dev photos served by the local CDN and classified
by the real service, and helpers to sign in through the form."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from lotlens.config import ApiKey, Settings
from lotlens.service import Item, Service
from lotlens.store import Store
from lotlens.vision import Pipeline

from httpserver import IMAGES

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "screenshots"
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


def _dev_images(dev_data: Path) -> dict[str, bytes]:
    """Real photos from the dev set: three dealer photos, two stock images, three placeholders."""
    rows = list(csv.DictReader(io.StringIO((dev_data / "manifest.csv").read_text())))
    pick = {"car": [r for r in rows if r["type"] == "Dealer" and r["color"]][:3]}
    pick["car"] += [r for r in rows if r["type"] == "Stock" and r["color"]][:2]
    pick["ph"] = [r for r in rows if r["type"] == "Placeholder" and int(r["width"]) >= 200][:3]
    return {f"{kind}{i}": (dev_data / r["path"]).read_bytes() for kind, rs in pick.items() for i, r in enumerate(rs)}


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own: Playwright's sync API keeps a loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def seed(settings: Settings, store: Store, pipeline: Pipeline, cdn: str, dev_data: Path) -> dict[str, str]:
    """Advertiser a: five vehicle photos, three placeholders and a dead link; b: one shared image and one
    of its own. Served by the local CDN and classified by the real service, so the store holds what
    production would."""
    for name, data in _dev_images(dev_data).items():
        IMAGES[f"web-{name}"] = data
    names = {n: f"{cdn}/img/a/{n}.jpg?name=web-{n}" for n in [f"car{i}" for i in range(5)] + ["ph0", "ph1", "ph2"]}
    items = [Item(url, vehicle_id=f"veh-{n}") for n, url in names.items()] + [Item(f"{cdn}/missing.jpg", "veh-x")]
    service = Service(settings, store, lambda: pipeline)
    results = _run(service.classify("a", items))
    keys = {n: r.image_key for n, r in zip(names, results, strict=False) if r.image_key}
    assert len(keys) == len(names), [r.reason for r in results]
    assert results[-1].status == "skipped"
    placeholders = [n for n in keys if store.answers([keys[n]], "a")[keys[n]].type == "Placeholder"]
    assert placeholders, "the bundled model found no placeholder among the dev set's placeholders"
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
