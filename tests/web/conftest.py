"""The review pages' fixtures: a seeded site, clients signed in per role, and a live server with
Debian's Chromium for the browser tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lotlens.config import Settings
from lotlens.store import Store
from lotlens.store.registry import Registry
from lotlens.store.review import ReviewQueue
from lotlens.train.registry import register
from lotlens.vision import Pipeline
from lotlens.vision.pipeline import default_model_dir
from lotlens.web import create_app

from httpserver import serve_app
from seeded import AXE_DIR, AXE_JS, AXE_VERSION, CHROMIUM, CHROMIUM_ARGS, KEYS, SCREENSHOTS, Site, seed
from synth import variant


@pytest.fixture
def site(tmp_path: Path, pipeline: Pipeline, server: str, request: pytest.FixtureRequest) -> Iterator[Site]:
    marker = request.node.get_closest_marker("site_settings")  # Settings are frozen: set before the app
    settings = Settings(
        **(marker.kwargs if marker else {}),
        data_dir=tmp_path / "data",
        allow_private_addresses=True,
        api_keys=list(KEYS.values()),
        fetch_retries=0,
        verify_fraction=0.0,
        model_poll_seconds=0.2,
        page_size=4,
    )
    store = Store.from_url(settings.resolved_database_url())
    keys = seed(settings, store, server)
    bundled = register(store, default_model_dir(), settings, "ana")
    register(store, variant(tmp_path, "lotlens-candidate", 0.45), settings, "ana", dataset="ds-test")
    Registry(store).promote(bundled.version, actor="ana", reason="first")
    queue = ReviewQueue(store)
    queue.add(
        "ds-test",
        keys["car1"],
        "type",
        "conflict",
        [
            {"value": "Dealer", "advertiser": "a", "fix_id": 1, "actor": "dealer-a"},
            {"value": "Stock", "advertiser": "b", "fix_id": 2, "actor": "dealer-b"},
        ],
        None,
        3.0,
    )
    queue.add(
        "ds-test",
        keys["car2"],
        "color",
        "doubt",
        [{"value": "Green", "advertiser": "a", "fix_id": 3, "actor": "dealer-a"}],
        "Yellow",
        0.97,
    )
    yield Site(settings, store, pipeline, keys, server)
    store.engine.dispose()


@pytest.fixture
def app_client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site.settings, site.store, site.pipeline), base_url="http://testserver") as c:
        yield c


# -- the browser ----------------------------------------------------------------------------------


@pytest.fixture
def live(site: Site) -> Iterator[str]:
    """`lotlens serve` for real on a free port, in a thread, over the seeded site."""
    yield from serve_app(create_app(site.settings, site.store, site.pipeline))


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (never Playwright's own browser download)."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, from npm into build/axe/ on first use (pinned; ignored by git)."""
    installed = AXE_JS.parent / "package.json"
    if not (installed.is_file() and json.loads(installed.read_text())["version"] == AXE_VERSION):
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                pytest.fail("npm is missing: the accessibility checks install axe-core with it")
            pytest.skip("npm not installed (apt-get install npm)")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(AXE_DIR),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return AXE_JS.read_text()


@pytest.fixture
def page(browser: object, live: str, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh browser context per test; its last screen is saved to build/screenshots/<test>.png."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(base_url=live, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # a style or script the site's own CSP refuses is a page that does not look as written
    pg.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield pg
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
