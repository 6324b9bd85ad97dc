"""Every review page in Debian's Chromium for accessibility (axe-core, injected by the test: no
serious or critical violation) and on a phone's screen (390x844): nothing wider than the screen,
the controls a person needs within reach. Screenshots go to build/screenshots/."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from seeded import KEYS, SCREENSHOTS, Site, axe_violations

pytestmark = pytest.mark.integration


def _sign_in(page: Page, who: str) -> None:
    page.goto("/signin")
    page.get_by_label("API key").fill(KEYS[who].key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def _check(page: Page, axe_source: str, path: str, found: dict[str, Any]) -> None:
    page.goto(path)
    page.wait_for_load_state("load")
    for v in axe_violations(page, axe_source):
        found.setdefault(path, []).append(v)


def test_axe_finds_nothing_serious_on_any_page(page: Page, site: Site, axe_source: str) -> None:
    found: dict[str, Any] = {}
    _check(page, axe_source, "/signin", found)
    _sign_in(page, "staff")
    key = site.keys["car1"]
    for path in [
        "/advertisers",
        "/advertisers?sort=low&desc=1",
        "/advertisers/a",
        "/advertisers/a/vehicles",
        "/advertisers/a?low=1&sort=unsure",
        f"/images/{key}?advertiser=a",
        f"/images/{key}",
        "/fixes",
        "/review",
        "/models",
        "/advertisers/nobody-here/../../images/c:" + "0" * 64,  # the error page
    ]:
        _check(page, axe_source, path, found)
    # the inventory with a selection and a save message showing
    page.goto("/advertisers/a")
    page.get_by_test_id("pick").first.check()
    page.get_by_test_id("bulk-confirm").click()
    expect(page.get_by_test_id("bulk-status")).to_be_visible()
    found.update(
        {"/advertisers/a (bulk bar)": axe_violations(page, axe_source)} if axe_violations(page, axe_source) else {}
    )
    assert found == {}, found


def test_axe_finds_nothing_serious_for_an_advertiser(page: Page, site: Site, axe_source: str) -> None:
    found: dict[str, Any] = {}
    _sign_in(page, "a")
    for path in ["/advertisers/a", "/advertisers/a/vehicles", f"/images/{site.keys['ph0']}", "/fixes", "/review"]:
        _check(page, axe_source, path, found)
    assert found == {}, found


def _fits(page: Page) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px screen"


def _within_screen(page: Page, testid: str) -> None:
    for box in (page.get_by_test_id(testid).nth(i).bounding_box() for i in range(page.get_by_test_id(testid).count())):
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390 + 0.5, f"{testid} is clipped: {box}"


def test_a_phone_screen(page: Page, site: Site) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _sign_in(page, "staff")
    expect(page.get_by_role("button", name="Sign out")).to_be_in_viewport()
    page.goto("/advertisers/a?per=24")
    _fits(page)
    _within_screen(page, "card")
    page.screenshot(path=str(SCREENSHOTS / "mobile-inventory.png"), full_page=True)

    page.goto(f"/images/{site.keys['car1']}?advertiser=a")
    _fits(page)
    picture, form = page.get_by_test_id("picture").bounding_box(), page.locator("form.fix").bounding_box()
    assert picture is not None
    assert form is not None
    assert form["y"] >= picture["y"] + picture["height"] - 1  # one column: the form under the picture
    for control in ("fix-type", "fix-color", "fix-comment", "update"):
        _within_screen(page, control)
    page.screenshot(path=str(SCREENSHOTS / "mobile-image.png"), full_page=True)

    page.goto("/review")
    _fits(page)
    for control in ("accept", "reject", "relabel"):
        _within_screen(page, control)
    page.screenshot(path=str(SCREENSHOTS / "mobile-review.png"), full_page=True)

    page.goto("/advertisers/a/vehicles")
    _fits(page)
    page.goto("/advertisers")
    _fits(page)
    page.goto("/fixes")
    _fits(page)  # wide tables scroll inside themselves
    page.goto("/models")
    _fits(page)


@pytest.mark.site_settings(low_confidence=0.85)  # so the cards show their doubts and chips
def test_readme_screenshots(page: Page, site: Site) -> None:
    """The README's two pictures, from the generated site (scripts/docs-screenshots copies them to docs/)."""
    page.set_viewport_size({"width": 1200, "height": 760})
    _sign_in(page, "a")
    page.goto("/advertisers/a?sort=unsure&per=24")
    page.get_by_test_id("pick").nth(0).click()
    page.get_by_test_id("pick").nth(2).click(modifiers=["Shift"])
    expect(page.get_by_test_id("bulk-count")).to_have_text("3 selected")
    page.screenshot(path=str(SCREENSHOTS / "readme-inventory.png"))
    page.goto(f"/images/{site.keys['car3']}?advertiser=a")
    page.wait_for_function("() => document.querySelector('[data-testid=picture]').naturalWidth > 0")
    expect(page.get_by_test_id("crop-box")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "readme-image.png"))
