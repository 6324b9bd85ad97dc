"""The review pages in a real browser: Debian's Chromium, headless, driven by Playwright against
`lotlens serve` on a local port. Each test leaves a screenshot in build/screenshots/."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from lotlens.store.registry import Registry
from lotlens.store.review import ReviewQueue

from seeded import KEYS, SCREENSHOTS, Site

pytestmark = pytest.mark.integration  # the site is seeded with ../shared/data/dev photos


def sign_in(page: Page, who: str, target: str) -> None:
    page.goto(target)
    expect(page).to_have_url(re.compile(r"/signin\?next="))
    page.get_by_label("API key").fill(KEYS[who].key)
    page.get_by_role("button", name="Sign in").click()


def test_advertiser_fixes_a_placeholder_and_sees_the_history(page: Page, site: Site) -> None:
    sign_in(page, "a", "/advertisers/a")
    expect(page.get_by_test_id("who")).to_contain_text("dealer-a")
    page.get_by_test_id("filter-type").select_option("Placeholder")
    page.get_by_test_id("apply-filters").click()
    expect(page).to_have_url(re.compile(r"type=Placeholder"))
    cards = page.get_by_test_id("card")
    n = cards.count()
    assert n >= 1
    card = cards.first
    key = card.get_attribute("data-key")
    expect(card.get_by_test_id("card-type")).to_have_text("Placeholder")
    page.screenshot(path=str(SCREENSHOTS.joinpath("advertiser-filtered.png")), full_page=True)
    card.get_by_test_id("fix-type").select_option("Dealer")
    card.get_by_test_id("fix-color").select_option("Blue")
    card.get_by_test_id("update").click()

    updated = page.get_by_test_id("updated")
    expect(updated.get_by_test_id("updated-type")).to_have_text("Dealer")
    expect(updated.get_by_test_id("updated-color")).to_have_text("Blue")
    expect(updated.get_by_test_id("updated-history")).to_contain_text("dealer-a: type Placeholder → Dealer")
    expect(page.get_by_test_id("count")).to_contain_text(f"{n - 1} image")  # still filtered to Placeholder
    # the image page holds the same story
    updated.get_by_role("link").first.click()
    expect(page.get_by_test_id("image-type")).to_have_text("Dealer")
    picture = page.get_by_test_id("picture")
    expect(picture).to_be_visible()
    page.wait_for_function("() => document.querySelector('[data-testid=picture]').naturalWidth > 0")
    box = picture.bounding_box()
    assert box is not None
    assert box["width"] > 100
    history = page.get_by_test_id("history")
    expect(history).to_contain_text("dealer-a")
    expect(history.locator("tr", has_text="type")).to_contain_text("Placeholder → Dealer")
    fixes = site.store.fixes(advertiser="a", content_key=key)
    assert [(f.field, f.old_value, f.new_value, f.actor) for f in fixes] == [
        ("type", "Placeholder", "Dealer", "dealer-a"),
        ("color", None, "Blue", "dealer-a"),
    ]


def test_the_crop_box_is_drawn_over_the_picture_at_its_size(page: Page, site: Site) -> None:
    key = site.keys["car0"]
    sign_in(page, "a", f"/images/{key}")
    page.wait_for_function("() => document.querySelector('[data-testid=picture]').naturalWidth > 0")
    info = site.store.image_info(key)
    assert info is not None and info.width and info.height
    x0, y0, x1, y1 = next(p.box for p in site.store.predictions(key) if p.box)
    picture, drawn = page.get_by_test_id("picture").bounding_box(), page.get_by_test_id("crop-box").bounding_box()
    assert picture is not None and drawn is not None
    sx, sy = picture["width"] / info.width, picture["height"] / info.height
    assert drawn["width"] == pytest.approx((x1 - x0) * sx, abs=2)
    assert drawn["height"] == pytest.approx((y1 - y0) * sy, abs=2)
    assert drawn["x"] - picture["x"] == pytest.approx(x0 * sx, abs=2)
    assert drawn["y"] - picture["y"] == pytest.approx(y0 * sy, abs=2)
    assert drawn["width"] > 40 and drawn["height"] > 20  # not the 4x4 px dot a CSP-blocked style left


def test_an_advertiser_cannot_open_another_advertisers_page(page: Page, site: Site) -> None:
    sign_in(page, "b", "/advertisers/b")
    expect(page.get_by_test_id("count")).to_be_visible()
    response = page.goto("/advertisers/a")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_test_id("error-detail")).to_contain_text("their own")
    response = page.goto(f"/images/{site.keys['car1']}")
    assert response is not None
    assert response.status == 403


def test_staff_judge_review_candidates_from_the_keyboard(page: Page, site: Site) -> None:
    sign_in(page, "staff", "/review")
    items = page.get_by_test_id("review-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("conflict")  # conflicts first
    expect(items.first).to_have_class(re.compile("selected"))
    page.screenshot(path=str(SCREENSHOTS / "review-queue.png"), full_page=True)
    page.keyboard.press("j")  # to the doubted label
    expect(items.nth(1)).to_have_class(re.compile("selected"))
    page.keyboard.press("a")
    expect(page.get_by_role("status")).to_have_text("Accepted.")
    expect(page.get_by_test_id("review-item")).to_have_count(1)
    [accepted] = ReviewQueue(site.store).items(status="accepted")
    assert (accepted.field, accepted.decided_value, accepted.decided_by) == ("color", "Green", "ana (staff)")
    # the conflict left: l focuses its label list, Enter relabels
    conflict = page.get_by_test_id("review-item")
    page.keyboard.press("l")
    labels = conflict.get_by_label("new label")
    expect(labels).to_be_focused()
    labels.select_option("Stock")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Relabelled.")
    expect(page.get_by_text("Nothing to review.")).to_be_visible()
    [relabelled] = ReviewQueue(site.store).items(status="relabelled")
    assert (relabelled.kind, relabelled.decided_value) == ("conflict", "Stock")


def test_admin_promotes_a_model(page: Page, site: Site) -> None:
    sign_in(page, "admin", "/models")
    row = page.get_by_test_id("model-row").filter(has_text="lotlens-candidate")
    row.get_by_placeholder("why").fill("better on advertiser a")
    row.get_by_test_id("promote").click()
    expect(page.get_by_role("status")).to_contain_text("Promoted.")
    expect(page.get_by_test_id("alias-champion")).to_have_text("lotlens-candidate")
    assert Registry(site.store).alias("champion") == "lotlens-candidate"
    expect(page.get_by_test_id("promotions")).to_contain_text("better on advertiser a")
    # the running server takes the new champion up by itself
    deadline = time.time() + 30
    while time.time() < deadline:
        page.reload()
        if page.get_by_test_id("serving").inner_text() == "lotlens-candidate":
            break
        time.sleep(0.3)
    expect(page.get_by_test_id("serving")).to_have_text("lotlens-candidate")
