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
    # the target's deferred scripts (chips, bulk fixes) run before DOMContentLoaded: a click that
    # lands earlier does nothing, so wait for the page itself, not only for its cards
    expect(page).not_to_have_url(re.compile(r"/signin"))
    page.wait_for_load_state("domcontentloaded")


def test_advertiser_fixes_a_placeholder_and_sees_the_history(page: Page, site: Site) -> None:
    sign_in(page, "a", "/advertisers/a")
    expect(page.get_by_test_id("who")).to_contain_text("dealer-a")
    page.get_by_test_id("filter-type").select_option("Placeholder")
    page.get_by_test_id("apply-filters").click()
    expect(page).to_have_url(re.compile(r"type=Placeholder"))
    page.wait_for_load_state("domcontentloaded")  # all cards parsed, the page's script running
    cards = page.get_by_test_id("card")
    n = cards.count()
    assert n >= 1
    card = cards.first
    key = card.get_attribute("data-key")
    file = card.locator(".url").inner_text()
    expect(card.get_by_test_id("card-type")).to_have_text("Placeholder")
    page.screenshot(path=str(SCREENSHOTS.joinpath("advertiser-filtered.png")), full_page=True)
    card.get_by_test_id("fix-type").select_option("Dealer")
    card.get_by_test_id("fix-color").select_option("Blue")
    card.get_by_test_id("fix-comment").fill("a real photo")
    card.get_by_test_id("update").click()

    # saved in place: the card swaps to the new answer, no reload
    expect(page.get_by_test_id("bulk-status")).to_contain_text("Saved 1 image.")
    card = page.locator(f'[data-testid=card][data-key="{key}"]')
    expect(card.get_by_test_id("card-type")).to_have_text("Dealer")
    expect(card.get_by_test_id("card-color")).to_have_text("Blue")
    expect(card.get_by_test_id("card-source")).to_contain_text("fixed by hand")
    page.reload()
    expect(page.get_by_test_id("count")).to_contain_text(f"{n - 1} image")  # still filtered to Placeholder
    page.get_by_test_id("filter-type").select_option("")
    page.get_by_test_id("filter-q").fill(file)  # find it again by its file name
    page.get_by_test_id("apply-filters").click()
    expect(page.get_by_test_id("count")).to_contain_text("1 image")
    updated = page.locator(f'[data-testid=card][data-key="{key}"]')
    # the image page holds the same story
    updated.locator("a.thumb").click()
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
    expect(history.locator("tr", has_text="type")).to_contain_text("a real photo")
    fixes = site.store.fixes(advertiser="a", content_key=key)
    assert [(f.field, f.old_value, f.new_value, f.actor) for f in fixes] == [
        ("type", "Placeholder", "Dealer", "dealer-a"),
        ("color", None, "Blue", "dealer-a"),
    ]


def test_a_bulk_fix_by_shift_click_keeps_the_place_and_undoes(page: Page, site: Site) -> None:
    page.set_viewport_size({"width": 900, "height": 560})
    sign_in(page, "a", "/advertisers/a?sort=file&per=24")
    cars = [site.keys[f"car{i}"] for i in range(5)]
    before = site.store.answers(cars, "a")
    picks = page.get_by_test_id("pick")
    expect(picks.first).to_have_accessible_name(re.compile(r"select image \d+, vehicle veh-car0"))
    picks.nth(0).click()
    picks.nth(4).click(modifiers=["Shift"])  # the range: the five cars, by file name
    expect(page.get_by_test_id("bulk-count")).to_have_text("5 selected")
    expect(page.locator(".card.picked")).to_have_count(5)
    page.get_by_test_id("bulk-color").select_option("Purple")
    page.get_by_test_id("bulk-comment").fill("lot lights")
    scrolled = page.evaluate("() => window.scrollY")
    assert scrolled > 0, "the test needs a page scrolled down to show that a save keeps it there"
    page.get_by_test_id("bulk-apply").click()
    expect(page.get_by_test_id("bulk-status")).to_contain_text("Saved 5 images.")
    for key in cars:
        expect(page.locator(f'[data-testid=card][data-key="{key}"] [data-testid=card-color]')).to_have_text("Purple")
    assert page.evaluate("() => window.scrollY") == pytest.approx(scrolled, abs=2)  # no reload, no jump
    fixes = site.store.fixes(advertiser="a")
    assert sorted((f.content_key, f.field, f.new_value, f.comment) for f in fixes) == sorted(
        (k, "color", "Purple", "lot lights") for k in cars
    )
    assert [f.old_value for f in sorted(fixes, key=lambda f: cars.index(f.content_key))] == [
        before[k].color for k in cars
    ]
    page.screenshot(path=str(SCREENSHOTS / "bulk-saved.png"))

    page.get_by_test_id("undo").click()
    expect(page.get_by_test_id("bulk-status")).to_contain_text("Undone: 5 images")
    for key in cars:
        expect(page.locator(f'[data-testid=card][data-key="{key}"] [data-testid=card-color]')).to_have_text(
            before[key].color or ""
        )
    assert page.evaluate("() => window.scrollY") == pytest.approx(scrolled, abs=2)
    after = site.store.answers(cars, "a")
    assert {k: after[k].color for k in cars} == {k: before[k].color for k in cars}
    history = site.store.fixes(advertiser="a")
    assert len(history) == 10  # append-only: five fixes, five compensating ones
    assert all(f.comment and f.comment.startswith("undo of fix #") for f in history[5:])

    # every image matching a filter, across pages
    page.goto("/advertisers/a?type=Placeholder&per=24")
    page.get_by_test_id("select-all-matching").click()
    expect(page.get_by_test_id("bulk-count")).to_have_text("all 3 matching this filter selected")
    page.get_by_test_id("bulk-type").select_option("Stock")
    page.get_by_test_id("bulk-apply").click()
    expect(page.get_by_test_id("bulk-status")).to_contain_text("Saved 3 images.")
    placeholders = [site.keys[f"ph{i}"] for i in range(3)]
    assert {a.type for a in site.store.answers(placeholders, "a").values()} == {"Stock"}


@pytest.mark.site_settings(low_confidence=0.85)  # the scripted model is 80% sure of colors, 90% of types
def test_an_unsure_first_pass_with_a_chip_and_looks_right(page: Page, site: Site) -> None:
    sign_in(page, "a", "/advertisers/a?low=1&sort=unsure&per=24")
    cards = page.get_by_test_id("card")
    expect(cards).to_have_count(5)  # the five cars; placeholders have no color to doubt
    first, second = cards.nth(0), cards.nth(1)
    key1, key2 = first.get_attribute("data-key"), second.get_attribute("data-key")
    assert key1
    assert key2
    expect(first.get_by_test_id("color-score")).to_have_text("color 80% sure")
    expect(first.get_by_test_id("type-score")).to_have_text("type 90% sure")
    chip = first.locator("[data-testid=chip][data-field=color]")
    choice = chip.get_attribute("data-value")
    assert choice
    assert choice != site.store.answers([key1], "a")[key1].color
    chip.click()
    expect(page.get_by_test_id("bulk-status")).to_contain_text("Saved 1 image.")
    expect(page.locator(f'[data-testid=card][data-key="{key1}"] [data-testid=card-color]')).to_have_text(choice)
    model = site.store.answers([key2], "a")[key2]
    second.get_by_test_id("looks-right").click()
    expect(page.get_by_test_id("bulk-status")).to_contain_text("Confirmed 1 image.")
    confirmed = site.store.fixes(advertiser="a", content_key=key2)
    assert sorted((f.field, f.old_value, f.new_value, f.confirmation) for f in confirmed) == sorted(
        [("type", model.type, model.type, True), ("color", model.color, model.color, True)]
    )
    page.reload()
    expect(cards).to_have_count(3)  # both left the unsure list
    assert page.locator(f'[data-testid=card][data-key="{key2}"]').count() == 0


def test_the_crop_box_is_drawn_over_the_picture_at_its_size(page: Page, site: Site) -> None:
    key = site.keys["car0"]
    sign_in(page, "a", f"/images/{key}")
    page.wait_for_function("() => document.querySelector('[data-testid=picture]').naturalWidth > 0")
    info = site.store.image_info(key)
    assert info is not None
    assert info.width
    assert info.height
    x0, y0, x1, y1 = next(p.box for p in site.store.predictions(key) if p.box)
    picture, drawn = page.get_by_test_id("picture").bounding_box(), page.get_by_test_id("crop-box").bounding_box()
    assert picture is not None
    assert drawn is not None
    sx, sy = picture["width"] / info.width, picture["height"] / info.height
    assert drawn["width"] == pytest.approx((x1 - x0) * sx, abs=2)
    assert drawn["height"] == pytest.approx((y1 - y0) * sy, abs=2)
    assert drawn["x"] - picture["x"] == pytest.approx(x0 * sx, abs=2)
    assert drawn["y"] - picture["y"] == pytest.approx(y0 * sy, abs=2)
    assert drawn["width"] > 40
    assert drawn["height"] > 20


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


def test_a_conflict_is_accepted_as_one_side_and_a_decision_undone(page: Page, site: Site) -> None:
    sign_in(page, "staff", "/review")
    items = page.get_by_test_id("review-item")
    conflict = items.first
    shared = site.store.answers([site.keys["car1"]], None)[site.keys["car1"]]
    expect(conflict.get_by_label(re.compile("new label"))).to_have_value(shared.type or "")  # the model's guess
    page.keyboard.press("?")
    expect(page.get_by_test_id("shortcuts")).to_be_visible()
    page.get_by_test_id("shortcuts-close").click()
    expect(page.get_by_test_id("shortcuts")).to_be_hidden()
    # single-key shortcuts off (WCAG 2.1.4): r rejects nothing, and it stays off after a reload
    page.get_by_test_id("shortcuts-toggle").uncheck()
    page.get_by_role("heading", name="Review queue").click()
    page.keyboard.press("r")
    page.keyboard.press("?")
    expect(page.get_by_test_id("shortcuts")).to_be_hidden()
    page.reload()
    expect(page.get_by_test_id("shortcuts-toggle")).not_to_be_checked()
    expect(items).to_have_count(2)
    # a conflict offers each of its values
    items.first.get_by_role("button", name=re.compile("accept Stock")).click()
    expect(page.get_by_role("status")).to_have_text("Accepted.")
    [accepted] = ReviewQueue(site.store).items(status="accepted")
    assert (accepted.kind, accepted.decided_value) == ("conflict", "Stock")
    expect(items).to_have_count(1)
    page.get_by_test_id("undo").click()
    expect(page.get_by_role("status")).to_contain_text("Undone")
    expect(items).to_have_count(2)
    assert ReviewQueue(site.store).items(status="accepted") == []


def test_admin_promotes_a_model(page: Page, site: Site) -> None:
    sign_in(page, "admin", "/models")
    row = page.get_by_test_id("model-row").filter(has_text="lotlens-candidate")
    row.get_by_placeholder("why").fill("better on advertiser a")
    row.get_by_test_id("promote").click()  # the browser asks for the confirmation first
    expect(page.get_by_test_id("alias-champion")).not_to_have_text("lotlens-candidate")
    row.get_by_test_id("promote-confirm").check()
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
