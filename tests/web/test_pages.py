"""The review pages through FastAPI's test client: sign-in, CSRF, the API's role rules, filters,
fixes, history and CSV, the review queue and the model registry, on a site seeded by the service."""

from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr

from lotlens.store.registry import Registry
from lotlens.store.repository import Answer
from lotlens.store.review import ReviewQueue
from lotlens.web import create_app
from lotlens.web.inventory import _lowest_score

from seeded import KEYS, Site, csrf_of, sign_in

pytestmark = pytest.mark.integration  # the site is seeded with ../shared/data/dev photos


def test_pages_need_a_sign_in_and_keep_the_target(app_client: TestClient) -> None:
    res = app_client.get("/advertisers/a?type=Placeholder", follow_redirects=False)
    assert res.status_code == 303
    assert res.headers["location"] == "/signin?next=%2Fadvertisers%2Fa%3Ftype%3DPlaceholder"
    app_client.get("/signin")
    token = app_client.cookies.get("lotlens_signin")
    res = app_client.post(
        "/signin", data={"key": KEYS["a"].key, "csrf": token, "next": "/advertisers/a?type=Placeholder"}
    )
    assert res.status_code == 200
    assert str(res.url).endswith("/advertisers/a?type=Placeholder")
    cookie = res.history[0].headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert KEYS["a"].key not in cookie  # the cookie carries an HMAC of the key, never the key


def test_sign_in_refuses_a_wrong_key_a_missing_token_and_a_foreign_redirect(app_client: TestClient) -> None:
    app_client.get("/signin")
    token = app_client.cookies.get("lotlens_signin")
    wrong = app_client.post("/signin", data={"key": "x" * 32, "csrf": token})
    assert wrong.status_code == 401
    assert "Unknown API key" in wrong.text
    assert app_client.cookies.get("lotlens_session") is None
    forged = app_client.post("/signin", data={"key": KEYS["a"].key, "csrf": "not-the-cookie"})
    assert forged.status_code == 403
    res = app_client.post(
        "/signin", data={"key": KEYS["a"].key, "csrf": token, "next": "//evil.example/"}, follow_redirects=False
    )
    assert res.headers["location"] == "/"


def test_a_session_ends_with_its_key(site: Site) -> None:
    # One session secret on both sides: the session ends because its key left, not because the
    # secret derived from the keys changed.
    before = site.settings.model_copy(update={"session_secret": SecretStr("s" * 32)})
    after = before.model_copy(update={"api_keys": [k for k in before.api_keys if k.role != "advertiser:b"]})
    with TestClient(create_app(before, site.store, site.pipeline)) as c:
        sign_in(c, "b")
        assert c.get("/advertisers/b").status_code == 200
        cookies = dict(c.cookies)
    with TestClient(create_app(before, site.store, site.pipeline), cookies=cookies) as c:
        assert c.get("/advertisers/b", follow_redirects=False).status_code == 200  # a restart keeps it
    with TestClient(create_app(after, site.store, site.pipeline), cookies=cookies) as c:
        res = c.get("/advertisers/b", follow_redirects=False)
    assert res.status_code == 303
    assert res.headers["location"].startswith("/signin")


def test_a_forged_or_tampered_cookie_is_no_session(app_client: TestClient) -> None:
    sign_in(app_client, "a")
    good = app_client.cookies.get("lotlens_session")
    assert good
    app_client.cookies.clear()
    app_client.cookies.set("lotlens_session", good)
    assert app_client.get("/advertisers/a", follow_redirects=False).status_code == 200
    app_client.cookies.clear()
    app_client.cookies.set("lotlens_session", good[:-2] + ("AA" if not good.endswith("AA") else "BB"))
    assert app_client.get("/advertisers/a", follow_redirects=False).status_code == 303


def test_an_advertiser_sees_only_its_own_pages(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "b")
    assert app_client.get("/").headers.get("content-type", "").startswith("text/html")
    own = app_client.get("/", follow_redirects=False)
    assert own.headers["location"] == "/advertisers/b"
    for path in (
        "/advertisers/a",
        f"/images/{site.keys['car1']}",
        f"/images/{site.keys['car1']}?advertiser=a",
        f"/images/{site.keys['car1']}/thumb",
        "/fixes?advertiser=a",
        "/fixes.csv?advertiser=a",
        "/review",
        "/models",
    ):
        res = app_client.get(path, follow_redirects=False)
        assert res.status_code == 403, path
    assert app_client.get("/advertisers", follow_redirects=False).headers["location"] == "/advertisers/b"
    page = app_client.get("/advertisers/a")
    assert "Not allowed" in page.text
    assert "text/html" in page.headers["content-type"]
    csrf = csrf_of(app_client.get("/advertisers/b").text)
    res = app_client.post(
        "/advertisers/a/fix",
        data={"csrf": csrf, "image_key": site.keys["car1"], "type": "Stock", "color": "Red"},
    )
    assert res.status_code == 403
    # nor through its own page with another advertiser's image
    res = app_client.post(
        "/advertisers/b/fix", data={"csrf": csrf, "image_key": site.keys["car1"], "type": "Stock", "color": "Red"}
    )
    assert res.status_code == 403
    assert site.store.fixes() == []
    # the image both advertisers show is b's to read too (its own view of it)
    assert app_client.get(f"/images/{site.keys['car0']}").status_code == 200


def test_inventory_filters_and_pages(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    all_ = app_client.get("/advertisers/a")
    assert "9 images" in all_.text  # 5 cars, 3 placeholders, 1 dead link
    assert "page 1 of 3" in all_.text
    ph = app_client.get("/advertisers/a?type=Placeholder")
    assert "3 images" in ph.text
    keys = set(re.findall(r'data-testid="card" data-key="([^"]+)"', ph.text))
    assert keys == {site.keys[f"ph{i}"] for i in range(3)}
    skipped = app_client.get("/advertisers/a?skipped=1")
    assert "1 image" in skipped.text
    assert "skipped: http_404" in skipped.text
    assert "1 image" in app_client.get("/advertisers/a?vehicle=veh-ph1").text
    assert "0 images" in app_client.get("/advertisers/a?source=manual").text
    model = app_client.get("/advertisers/a?source=model")
    assert "8 images" in model.text
    page3 = app_client.get("/advertisers/a?page=3")
    assert "page 3 of 3" in page3.text
    assert len(re.findall(r'data-testid="card"', page3.text)) == 1
    assert app_client.get("/advertisers/a?color=Chartreuse").status_code == 422
    assert app_client.get("/advertisers/a?type=Truck").status_code == 422
    assert app_client.get("/advertisers/a?page=0").status_code == 422


def test_a_fix_from_the_inventory_changes_the_answer_and_the_history(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    page = app_client.get("/advertisers/a?type=Placeholder")
    key = site.keys["ph0"]
    csrf = csrf_of(page.text)
    missing = app_client.post("/advertisers/a/fix", data={"image_key": key, "type": "Dealer"})
    assert missing.status_code == 422  # no CSRF token at all: a malformed form
    stale = app_client.post("/advertisers/a/fix", data={"csrf": "x" * 20, "image_key": key, "type": "Dealer"})
    assert stale.status_code == 403
    assert site.store.fixes() == []
    res = app_client.post(
        "/advertisers/a/fix",
        data={"csrf": csrf, "image_key": key, "type": "Dealer", "color": "", "back": "type=Placeholder&evil=1"},
        follow_redirects=False,
    )
    assert res.status_code == 303
    assert res.headers["location"].startswith("/advertisers/a?type=Placeholder&updated=")
    [fix] = site.store.fixes()
    assert (fix.field, fix.old_value, fix.new_value, fix.actor, fix.advertiser, fix.scope) == (
        "type",
        "Placeholder",
        "Dealer",
        "dealer-a",
        "a",
        "advertiser",
    )
    after = app_client.get(res.headers["location"])
    assert 'data-testid="updated-type">Dealer<' in after.text
    assert "dealer-a: type Placeholder → Dealer" in after.text
    assert "2 images" in after.text  # the filter still says Placeholder: one fewer
    again = app_client.post("/advertisers/a/fix", data={"csrf": csrf, "image_key": key, "type": "Dealer", "color": ""})
    assert "Nothing changed" in again.text
    assert len(site.store.fixes()) == 1
    # b never sees a's fix of the shared image's answer
    assert site.store.answers([key], "b")[key].type == "Placeholder"
    image = app_client.get(f"/images/{key}")
    assert 'data-testid="image-type">Dealer<' in image.text
    assert "Placeholder</s> → <b>Dealer" in image.text


def test_only_staff_make_global_fixes(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    csrf = csrf_of(app_client.get("/advertisers/a").text)
    key = site.keys["car0"]
    current = site.store.answers([key], None)[key]
    new_type = "Stock" if current.type != "Stock" else "Dealer"
    res = app_client.post(
        "/advertisers/a/fix", data={"csrf": csrf, "image_key": key, "type": new_type, "scope": "global"}
    )
    assert res.status_code == 403
    # A form that changes nothing is refused the same way, not answered "nothing changed".
    res = app_client.post(
        "/advertisers/a/fix", data={"csrf": csrf, "image_key": key, "type": current.type, "scope": "global"}
    )
    assert res.status_code == 403
    assert "Nothing changed" not in res.text
    sign_in(app_client, "staff")
    csrf = csrf_of(app_client.get("/advertisers/a").text)
    res = app_client.post(
        "/advertisers/a/fix", data={"csrf": csrf, "image_key": key, "type": new_type, "scope": "global"}
    )
    assert res.status_code == 200
    [fix] = site.store.fixes()
    assert (fix.scope, fix.actor, fix.role) == ("global", "ana (staff)", "staff")
    assert site.store.answers([key], "b")[key].type == new_type  # the shared answer


def test_image_page_shows_urls_keys_box_predictions(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    key = site.keys["car0"]
    page = app_client.get(f"/images/{key}")
    assert page.status_code == 200
    assert f"{site.cdn}/img/a/car0.jpg?name=web-car0" in page.text
    assert f"{site.cdn}/img/b/shared.jpg" not in page.text  # b's URL of the same image is b's business
    assert site.store.predictions(key)[0].model_version in page.text
    assert 'data-testid="crop-box"' in page.text  # the studio car's crop, drawn on the picture
    box = next(p.box for p in site.store.predictions(key) if p.box)
    drawn = re.search(r'data-box="(\d+),(\d+),(\d+),(\d+)"', page.text)
    assert drawn, "the crop box is not drawn"
    x, y, w, h = map(int, drawn.groups())
    assert (x, y, x + w, y + h) == tuple(box)
    assert " style=" not in page.text  # the site's CSP (style-src 'self') would drop it
    assert "/thumb?side=640&amp;advertiser=a" in page.text
    assert app_client.get("/images/c:" + "f" * 64).status_code == 403  # not in a's inventory: no hint it exists
    sign_in(app_client, "staff")
    assert app_client.get("/images/c:" + "f" * 64).status_code == 404


def test_thumbnails_are_small_jpegs_of_the_kept_bytes(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    key = site.keys["car1"]
    res = app_client.get(f"/images/{key}/thumb?side=160")
    assert res.status_code == 200
    assert res.headers["content-type"] == "image/jpeg"
    assert "immutable" in res.headers["cache-control"]
    im = Image.open(io.BytesIO(res.content))
    assert max(im.size) == 160
    assert app_client.get(f"/images/{key}/thumb?side=9999").status_code == 422
    (site.settings.data_dir / "images").mkdir(exist_ok=True)
    from lotlens.store.images import ImageFolder

    (site.settings.data_dir / ImageFolder.relpath(key)).write_bytes(b"\xff\xd8 not really a jpeg")
    assert app_client.get(f"/images/{key}/thumb?side=320").status_code == 422


def test_history_filters_and_csv(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    csrf = csrf_of(app_client.get("/advertisers/a").text)
    for key, value in ((site.keys["car0"], "Stock"), (site.keys["car1"], "Placeholder")):
        current = site.store.answers([key], "a")[key].type
        app_client.post(
            "/advertisers/a/fix",
            data={"csrf": csrf, "image_key": key, "type": value if value != current else "Dealer", "color": "Black"},
        )
    history = app_client.get("/fixes")
    assert history.status_code == 200
    n = len(site.store.fixes(advertiser="a"))
    assert f"{n} fixes" in history.text
    typed = len(site.store.fixes(advertiser="a", field="type", actor="dealer-a"))
    assert typed == 2
    assert "2 fixes," in app_client.get("/fixes?field=type&actor=dealer-a&since=2000-01-01").text
    assert "0 fixes," in app_client.get("/fixes?actor=somebody-else").text
    assert "0 fixes" in app_client.get("/fixes?until=2000-01-01").text
    assert app_client.get("/fixes?since=yesterday").status_code == 422
    res = app_client.get("/fixes.csv?field=color")
    assert res.headers["content-type"].startswith("text/csv")
    assert "attachment" in res.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(res.text)))
    assert rows
    assert {r["field"] for r in rows} == {"color"}
    assert {r["actor"] for r in rows} == {"dealer-a"}
    assert {r["advertiser"] for r in rows} == {"a"}


def test_csv_neutralises_formulas(site: Site, app_client: TestClient) -> None:
    key = site.keys["car0"]
    site.store.add_fix(
        key, "color", "Red", actor="ana", role="staff", scope="advertiser", advertiser="a", comment="=HYPERLINK(1)"
    )
    sign_in(app_client, "staff")
    [row] = list(csv.DictReader(io.StringIO(app_client.get("/fixes.csv?advertiser=a").text)))
    assert row["comment"] == "'=HYPERLINK(1)"


def test_review_queue_accept_reject_relabel(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "staff")
    page = app_client.get("/review")
    assert page.status_code == 200
    ids = [int(i) for i in re.findall(r'data-testid="review-item" data-id="(\d+)"', page.text)]
    conflict, doubt = ids  # conflicts first
    csrf = csrf_of(page.text)
    res = app_client.post(f"/review/{conflict}", data={"csrf": csrf, "action": "accept"})
    assert "A conflict has several labels" in res.text  # told why, nothing decided
    assert ReviewQueue(site.store).items()[0].status == "pending"
    res = app_client.post(f"/review/{conflict}", data={"csrf": csrf, "action": "relabel", "value": "Stock"})
    assert "Relabelled." in res.text
    res = app_client.post(f"/review/{doubt}", data={"csrf": csrf, "action": "relabel", "value": "Beige"})
    assert res.status_code == 422
    res = app_client.post(f"/review/{doubt}", data={"csrf": csrf, "action": "accept"})
    assert "Accepted." in res.text
    decided = {r.id: (r.status, r.decided_value, r.decided_by) for r in ReviewQueue(site.store).items(status=None)}
    assert decided == {conflict: ("relabelled", "Stock", "ana (staff)"), doubt: ("accepted", "Green", "ana (staff)")}
    assert "Nothing to review." in app_client.get("/review").text
    assert app_client.post("/review/999", data={"csrf": csrf, "action": "reject"}).status_code == 404


def test_models_page_and_only_admin_promotes(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "staff")
    page = app_client.get("/models")
    assert page.status_code == 200
    assert "lotlens-candidate" in page.text
    assert 'data-testid="promote"' not in page.text
    assert "<svg" in page.text  # the watch charts
    csrf = csrf_of(page.text)
    assert app_client.post("/models/lotlens-candidate/promote", data={"csrf": csrf}).status_code == 403
    sign_in(app_client, "admin")
    page = app_client.get("/models")
    csrf = csrf_of(page.text)
    champion = Registry(site.store).alias("champion")
    no_reason = app_client.post("/models/lotlens-candidate/promote", data={"csrf": csrf, "confirm": "1"})
    assert no_reason.status_code == 422
    unconfirmed = app_client.post("/models/lotlens-candidate/promote", data={"csrf": csrf, "reason": "better on a"})
    assert unconfirmed.status_code == 422
    assert "confirmation" in unconfirmed.text
    assert Registry(site.store).alias("champion") == champion
    res = app_client.post(
        "/models/lotlens-candidate/promote", data={"csrf": csrf, "reason": "better on a", "confirm": "1"}
    )
    assert "Promoted." in res.text
    assert Registry(site.store).alias("champion") == "lotlens-candidate"
    nope = app_client.post("/models/nope/promote", data={"csrf": csrf, "reason": "x", "confirm": "1"})
    assert nope.status_code == 404
    res = app_client.post("/models/rollback", data={"csrf": csrf, "reason": "fix rate up"})
    assert "Rolled back." in res.text
    assert Registry(site.store).alias("champion") != "lotlens-candidate"
    assert [p.actor for p in Registry(site.store).history()][-2:] == ["root (admin)", "root (admin)"]


def test_sweep_report_is_served_to_staff_only_and_never_outside_its_folder(site: Site, app_client: TestClient) -> None:
    folder = site.settings.data_dir / "sweeps" / "sw-1"
    folder.mkdir(parents=True)
    (folder / "comparison.json").write_text(
        '{"sweep": "sw-1", "dataset": "ds-x", "rows": [{"name": "lr-c1", "score": 3.5, "type_accuracy": 0.97,'
        ' "placeholder_recall": 1.0, "color_accuracy": 0.8, "worst_group": 0.9, "version": "v1"}]}'
    )
    (folder / "report.html").write_text("<h1>sweep report</h1>")
    sign_in(app_client, "staff")
    page = app_client.get("/models")
    assert "lr-c1" in page.text
    assert "97.0%" in page.text
    assert 'data-testid="sweep-champion"' in page.text  # the champion sits in the sweep table
    assert 'data-testid="different-test-sets"' in page.text  # scored on another dataset: no differences
    assert 'data-testid="delta-' not in page.text
    assert 'data-testid="recalls"' in page.text
    assert app_client.get("/models/sweeps/sw-1/report.html").text == "<h1>sweep report</h1>"
    assert app_client.get("/models/sweeps/../report.html").status_code in (404, 422)
    assert app_client.get("/models/sweeps/sw-1/comparison.json").status_code == 422
    sign_in(app_client, "a")
    assert app_client.get("/models/sweeps/sw-1/report.html").status_code == 403


def test_pages_carry_security_headers_and_the_api_keeps_json_errors(app_client: TestClient) -> None:
    sign_in(app_client, "a")
    res = app_client.get("/advertisers/a")
    csp = res.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["cache-control"] == "no-store"
    api = app_client.get("/v1/images/c:" + "0" * 64, headers={"Authorization": f"Bearer {KEYS['b'].key}"})
    assert api.status_code == 403
    assert api.json()["detail"]
    assert "content-security-policy" not in api.headers


def test_local_mode_needs_no_sign_in_but_still_checks_csrf(site: Site) -> None:
    local = site.settings.model_copy(update={"api_keys": []})
    with TestClient(create_app(local, site.store, site.pipeline)) as c:
        page = c.get("/advertisers/a")
        assert page.status_code == 200
        assert "local · admin" in page.text
        key = site.keys["car0"]
        assert (
            c.post("/advertisers/a/fix", data={"csrf": "guess", "image_key": key, "type": "Stock"}).status_code == 403
        )
        csrf = csrf_of(page.text)
        current = site.store.answers([key], "a")[key].type
        new_type = "Stock" if current != "Stock" else "Dealer"
        res = c.post("/advertisers/a/fix", data={"csrf": csrf, "image_key": key, "type": new_type})
        assert res.status_code == 200
        assert [f.actor for f in site.store.fixes()] == ["local"]


@pytest.mark.parametrize("path", ["/advertisers/a", "/fixes", "/review", "/models"])
def test_every_page_renders_for_staff(app_client: TestClient, path: str) -> None:
    sign_in(app_client, "staff")
    res = app_client.get(path)
    assert res.status_code == 200
    assert '<main id="main"' in res.text
    assert "ana (staff)" in res.text


def test_low_confidence_is_the_weaker_field_the_model_made() -> None:
    scores = {"type": {"Dealer": 0.9}, "color": {"Red": 0.3}}
    assert _lowest_score(Answer("c:1", "Dealer", "Red", scores)) == 0.3
    assert _lowest_score(Answer("c:1", "Dealer", "Red", scores, manual=("color",))) == 0.9
    assert _lowest_score(Answer("c:1", "Dealer", "Red", scores, manual=("type", "color"))) is None
    assert _lowest_score(Answer("c:1", "Placeholder", None, {"type": {"Placeholder": 0.45}})) == 0.45


def test_low_confidence_filter_on_the_site(site: Site) -> None:
    # The scripted model gives every photo a color score of 0.8 and every placeholder a type score
    # of 0.9: under 0.85, the five photos are unsure and the three placeholders are not.
    stricter = site.settings.model_copy(update={"low_confidence": 0.85})
    cars = {site.keys[f"car{i}"] for i in range(5)}
    with TestClient(create_app(stricter, site.store, site.pipeline)) as c:
        sign_in(c, "a")
        page = c.get("/advertisers/a?low=1")
    shown = set(re.findall(r'data-testid="card" data-key="([^"]+)"', page.text))
    assert len(shown) == site.settings.page_size
    assert shown <= cars
    assert "5 images" in page.text


def test_the_listing_is_read_once_while_nothing_changes(
    site: Site, app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    listing = site.store.listing
    monkeypatch.setattr(site.store, "listing", lambda adv: reads.append(adv) or listing(adv))
    sign_in(app_client, "a")
    for path in ("/advertisers/a", "/advertisers/a?page=2", "/advertisers/a?type=Placeholder"):
        assert app_client.get(path).status_code == 200
    assert reads == ["a"]
    key = site.keys["ph0"]
    site.store.add_fix(key, "type", "Stock", actor="ana", role="staff", scope="global", advertiser=None)  # elsewhere
    page = app_client.get("/advertisers/a?source=manual")
    assert reads == ["a", "a"]
    assert re.findall(r'data-testid="card" data-key="([^"]+)"', page.text) == [key]
    site.store.skip_many("a", [(f"{site.cdn}/img/a/car0.jpg?name=web-car0", "timeout", None)])
    assert "skipped: timeout" in app_client.get("/advertisers/a?skipped=1").text
    assert reads == ["a", "a", "a"]


def test_an_advertiser_reads_no_other_advertisers_fixes(site: Site, app_client: TestClient) -> None:
    """A staff fix of an image only b shows stays out of a's history; on the image both show, a
    reads the fix but not the name of the advertiser it was made for."""
    b_only = next(k for k, _u in ((k, u) for k, u in _b_images(site)) if not site.store.seen_by("a", k))
    shared = site.keys["car0"]
    for key, comment in ((b_only, "secret of b"), (shared, "fixed for b")):
        site.store.add_fix(
            key, "type", "Stock", actor="ana", role="staff", scope="global", advertiser="b", comment=comment
        )
    sign_in(app_client, "a")
    page = app_client.get("/fixes")
    assert "secret of b" not in page.text
    assert "fixed for b" in page.text
    rows = list(csv.DictReader(io.StringIO(app_client.get("/fixes.csv").text)))
    assert [(r["comment"], r["advertiser"]) for r in rows] == [("fixed for b", "")]
    api = app_client.get("/v1/fixes", headers={"Authorization": f"Bearer {KEYS['a'].key}"}).json()["fixes"]
    assert [(f["comment"], f["advertiser"]) for f in api] == [("fixed for b", None)]
    sign_in(app_client, "staff")
    assert "secret of b" in app_client.get("/fixes").text


def _b_images(site: Site) -> list[tuple[str, str]]:
    return [(k, u) for k, rows in site.store.sightings(site.store.inventory("b")).items() for _adv, u in rows]


def test_sign_out_ends_the_session(app_client: TestClient) -> None:
    sign_in(app_client, "a")
    csrf = csrf_of(app_client.get("/advertisers/a").text)
    assert app_client.post("/signout", data={"csrf": "wrong" * 5}).status_code == 403
    res = app_client.post("/signout", data={"csrf": csrf}, follow_redirects=False)
    assert res.headers["location"] == "/signin"
    assert 'lotlens_session=""' in res.headers["set-cookie"]
    assert app_client.get("/advertisers/a", follow_redirects=False).status_code == 303


def test_a_long_review_queue_shows_the_most_urgent_first(
    site: Site, app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lotlens.web import review

    monkeypatch.setattr(review, "REVIEW_PAGE", 1)
    sign_in(app_client, "staff")
    page = app_client.get("/review")
    assert "2 items, the first 1 shown" in page.text
    assert len(re.findall(r'data-testid="review-item"', page.text)) == 1
    assert "conflict" in page.text


def test_a_database_outage_is_a_503_to_retry_on_pages_and_api(
    site: Site, app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    sign_in(app_client, "a")

    def down(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(site.store, "inventory_version", down)
    monkeypatch.setattr(site.store, "answers", down)
    page = app_client.get("/advertisers/a")
    assert page.status_code == 503
    assert page.headers["retry-after"] == "5"
    assert "Try again in a moment" in page.text
    api = app_client.get(f"/v1/images/{site.keys['car0']}", headers={"Authorization": f"Bearer {KEYS['a'].key}"})
    assert api.status_code == 503
    assert api.headers["content-type"] == "application/problem+json"
    assert api.json()["code"] == "store_unavailable"
    monkeypatch.undo()
    assert app_client.get("/advertisers/a").status_code == 200


def test_a_bulk_fix_is_checked_whole_before_anything_is_written(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    csrf = csrf_of(app_client.get("/advertisers/a").text)
    cars = [site.keys[f"car{i}"] for i in range(3)]
    own = app_client.cookies.get("lotlens_session")
    # one image of another advertiser among them: refused, and none of the others is fixed
    b_only = next(k for k in site.store.inventory("b") if not site.store.seen_by("a", k))
    res = app_client.post("/advertisers/a/bulk", data={"csrf": csrf, "keys": [*cars, b_only], "color": "Purple"})
    assert res.status_code == 403
    bad = app_client.post("/advertisers/a/bulk", data={"csrf": csrf, "keys": cars, "color": "Chartreuse"})
    assert bad.status_code == 422
    stale = app_client.post("/advertisers/a/bulk", data={"csrf": "x" * 20, "keys": cars, "color": "Purple"})
    assert stale.status_code == 403
    assert site.store.fixes() == []
    assert app_client.cookies.get("lotlens_session") == own
    ok = app_client.post("/advertisers/a/bulk", data={"csrf": csrf, "keys": cars, "color": "Purple"})
    assert ok.status_code == 200
    body = ok.json()
    assert body["message"] == "Saved 3 images."
    assert sorted(body["changed"]) == sorted(cars)
    drawn = {re.search(r'data-key="([^"]+)"', html).group(1): html for html in body["cards"].values()}  # type: ignore[union-attr]
    assert set(drawn) == set(cars)
    assert all("Purple" in html and 'data-testid="card"' in html for html in drawn.values())
    assert {k: a.color for k, a in site.store.answers(cars, "a").items()} == dict.fromkeys(cars, "Purple")
    assert len(body["fix_ids"]) == 3


def test_a_bulk_fix_of_everything_matching_a_filter(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    csrf = csrf_of(app_client.get("/advertisers/a").text)
    res = app_client.post(
        "/advertisers/a/bulk", data={"csrf": csrf, "all": "1", "filter": "type=Placeholder", "type": "Stock"}
    )
    assert res.json()["message"] == "Saved 3 images."
    placeholders = [site.keys[f"ph{i}"] for i in range(3)]
    assert {a.type for a in site.store.answers(placeholders, "a").values()} == {"Stock"}
    assert "0 images" in app_client.get("/advertisers/a?type=Placeholder").text
    bad = app_client.post(
        "/advertisers/a/bulk", data={"csrf": csrf, "all": "1", "filter": "type=Truck", "type": "Stock"}
    )
    assert bad.status_code == 422


def test_looks_right_records_confirmations_and_undo_compensates(site: Site, app_client: TestClient) -> None:
    from lotlens.train.dataset import _labels_from_fixes

    sign_in(app_client, "a")
    csrf = csrf_of(app_client.get("/advertisers/a").text)
    key = site.keys["car1"]
    model = site.store.answers([key], "a")[key]
    res = app_client.post("/advertisers/a/bulk", data={"csrf": csrf, "keys": [key], "confirm": "1"})
    assert res.json()["message"] == "Confirmed 1 image."
    fixes = site.store.fixes(advertiser="a")
    assert sorted((f.field, f.old_value, f.new_value, f.confirmation) for f in fixes) == sorted(
        [("type", model.type, model.type, True), ("color", model.color, model.color, True)]
    )
    labels, _ = _labels_from_fixes(fixes)  # a confirmed label for the next dataset
    assert labels[(key, "color")] == (model.color, "a")
    again = app_client.post("/advertisers/a/bulk", data={"csrf": csrf, "keys": [key], "confirm": "1"})
    assert again.json()["message"].startswith("Nothing changed")  # both fields are people's now
    # a correction, then its undo: a compensating fix, nothing removed
    fixed = app_client.post("/advertisers/a/bulk", data={"csrf": csrf, "keys": [key], "type": "Stock"}).json()
    undone = app_client.post("/advertisers/a/undo", data={"csrf": csrf, "fix_ids": fixed["fix_ids"]})
    assert undone.status_code == 200
    assert site.store.answers([key], "a")[key].type == model.type
    history = site.store.fixes(advertiser="a")
    assert [(f.field, f.old_value, f.new_value) for f in history[-2:]] == [
        ("type", model.type, "Stock"),
        ("type", "Stock", model.type),
    ]
    assert history[-1].comment == f"undo of fix #{fixed['fix_ids'][0]}"
    # b can neither undo a's fixes nor learn they exist
    sign_in(app_client, "b")
    csrf_b = csrf_of(app_client.get("/advertisers/b").text)
    refused = app_client.post("/advertisers/a/undo", data={"csrf": csrf_b, "fix_ids": fixed["fix_ids"]})
    assert refused.status_code == 403
    unknown = app_client.post("/advertisers/b/undo", data={"csrf": csrf_b, "fix_ids": fixed["fix_ids"]})
    assert unknown.status_code == 404
    assert len(site.store.fixes()) == len(history)


@pytest.mark.site_settings(low_confidence=0.85)  # the scripted model is 80% sure of colors
def test_inventory_search_sort_and_readable_cards(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    found = app_client.get("/advertisers/a?q=car3.jpg")
    assert "1 image" in found.text
    assert f'data-key="{site.keys["car3"]}"' in found.text
    by_file = app_client.get("/advertisers/a?sort=file&per=24").text
    keys = re.findall(r'data-testid="card" data-key="([^"]*)"', by_file)
    assert keys[:5] == [site.keys[f"car{i}"] for i in range(5)]
    unsure = app_client.get("/advertisers/a?sort=unsure&per=24").text
    first = re.findall(r'data-testid="card" data-key="([^"]*)"', unsure)[:5]
    assert set(first) == {site.keys[f"car{i}"] for i in range(5)}  # 80% sure of the color beats 90% of a type
    assert "color 80% sure" in unsure
    assert 'class="swatch swatch-' in unsure
    assert "type-placeholder" in unsure
    assert "first classified" in unsure
    assert ">cache<" not in unsure
    assert 'aria-label="type of image ' in unsure
    assert app_client.get("/advertisers/a?sort=random").status_code == 422
    assert app_client.get("/advertisers/a?per=7").status_code == 422


def test_image_page_has_a_readable_title_and_previous_next(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    listing = list(dict.fromkeys(r.content_key for r in site.store.listing("a") if r.content_key))
    middle = listing[1]
    page = app_client.get(f"/images/{middle}?advertiser=a").text
    vehicle = next(s.vehicle_id for s in site.store.sightings_of(middle, "a"))
    answer = site.store.answers([middle], "a")[middle]
    title = re.search(r"<title>(.*?)</title>", page)
    assert title
    assert title.group(1).startswith(f"vehicle {vehicle} · {answer.type}")
    assert middle not in title.group(1)  # not the 64-character hash
    links = {rel: unquote(k) for k, rel in re.findall(r'href="/images/([^"?]+)\?advertiser=a" rel="(prev|next)"', page)}
    assert links == {"prev": listing[0], "next": listing[2]}
    first = app_client.get(f"/images/{listing[0]}?advertiser=a").text
    assert 'rel="prev"' not in first
    assert 'rel="icon" href="/static/favicon.svg"' in first
    assert app_client.get("/static/favicon.svg").status_code == 200


def test_vehicles_and_the_advertisers_health_table(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    site.store.see("a", "https://cdn.example/extra-ph.jpg", site.keys["ph1"], "veh-car0")  # car0 gets a placeholder too
    page = app_client.get("/advertisers/a/vehicles").text
    vehicles = re.findall(r'data-testid="vehicle" data-vehicle="([^"]*)"', page)
    assert vehicles[:4] == ["veh-ph0", "veh-ph1", "veh-ph2", "veh-x"]  # no real photo (veh-x: a dead link) first
    assert 'data-testid="no-photo-count">4<' in page
    assert 'data-testid="placeholder-share">' in page
    only = app_client.get("/advertisers/a/vehicles?show=no-photo").text
    assert re.findall(r'data-vehicle="([^"]*)"', only) == ["veh-ph0", "veh-ph1", "veh-ph2", "veh-x"]
    car0 = page[page.index('data-vehicle="veh-car0"') :]
    car0 = car0[: car0.index("</ul>")]
    assert "2 images" in car0
    assert 'data-testid="vehicle-color"' in car0  # the photo votes, the placeholder does not
    assert app_client.get("/advertisers/b/vehicles").status_code == 403
    assert app_client.get("/advertisers").status_code == 200  # an advertiser goes to its own page
    sign_in(app_client, "staff")
    table = app_client.get("/advertisers?sort=placeholders&desc=1").text
    assert re.findall(r'<td><a href="/advertisers/([^"/]+)">', table) == ["a", "b"]
    assert 'aria-sort="descending"' in table
    row_a = table[table.index('<a href="/advertisers/a">') :].split("</tr>")[0]
    answers = site.store.answers(site.store.inventory("a"), "a")
    answered = [answers[r.content_key] for r in site.store.listing("a") if r.content_key in answers]  # per URL
    share = sum(a.type == "Placeholder" for a in answered) / len(answered)
    assert share == 4 / 9
    assert f"{100 * share:.0f}%" in row_a
    found = app_client.get("/advertisers?q=B").text
    assert re.findall(r'<td><a href="/advertisers/([^"/]+)">', found) == ["b"]


def test_staff_table_rereads_only_the_inventories_that_changed(
    site: Site, app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(app_client, "staff")
    read: list[str] = []
    listing = site.store.listing

    def counted(advertiser: str) -> object:
        read.append(advertiser)
        return listing(advertiser)

    monkeypatch.setattr(site.store, "listing", counted)
    # more advertisers than the listing cache holds, as on a real site: it cannot serve the table
    monkeypatch.setattr(app_client.app.state.lotlens_listings, "size", 1)  # type: ignore[attr-defined]

    def row(table: str, adv: str) -> str:
        return table[table.index(f'<a href="/advertisers/{adv}">') :].split("</tr>")[0]

    first = app_client.get("/advertisers").text
    assert sorted(read) == ["a", "b"]
    read.clear()
    again = app_client.get("/advertisers?sort=low&desc=1").text
    assert read == []  # nothing changed: no inventory is read again
    assert row(again, "a") == row(first, "a")
    site.store.see("a", "https://cdn.example/one-more.jpg", site.keys["car1"], "veh-more")
    third = app_client.get("/advertisers").text
    assert read == ["a"]  # only the advertiser whose inventory changed
    assert row(third, "b") == row(first, "b")
    images = int(re.findall(r"<td[^>]*>(\d+)</td>", row(first, "a"))[0])
    assert f">{images + 1}</td>" in row(third, "a")


def test_thumbnails_are_cut_once_and_revalidate_by_etag(site: Site, app_client: TestClient) -> None:
    from lotlens.storage import Storage
    from lotlens.store.images import ImageFolder
    from lotlens.web.images import ThumbnailFolder

    sign_in(app_client, "a")
    key = site.keys["car2"]
    first = app_client.get(f"/images/{key}/thumb?side=160")
    assert first.status_code == 200
    assert "immutable" in first.headers["cache-control"]
    assert "private" in first.headers["cache-control"]
    storage = Storage.from_settings(site.settings)
    kept = ThumbnailFolder(storage, site.settings.resolved_cache_dir()).path(key, 160)
    assert kept.read_bytes() == first.content
    (site.settings.data_dir / ImageFolder.relpath(key)).write_bytes(b"not an image any more")
    again = app_client.get(f"/images/{key}/thumb?side=160")
    assert again.content == first.content  # served from the kept thumbnail, not cut again
    etag = first.headers["etag"]
    same = app_client.get(f"/images/{key}/thumb?side=160", headers={"If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    other = app_client.get(f"/images/{key}/thumb?side=640", headers={"If-None-Match": etag})
    assert other.status_code == 422  # another size is another thumbnail: cut now, from the broken bytes
    # an advertiser may not read another's image through a cached thumbnail either
    sign_in(app_client, "b")
    assert app_client.get(f"/images/{key}/thumb?side=160", headers={"If-None-Match": etag}).status_code == 403


def test_pages_are_gzipped_with_their_cookies(site: Site, app_client: TestClient) -> None:
    sign_in(app_client, "a")
    res = app_client.get("/advertisers/a", headers={"Accept-Encoding": "gzip"})
    assert res.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in res.headers["vary"]
    assert int(res.headers["content-length"]) < len(res.content) / 3  # decoded by the client
    assert res.headers["content-security-policy"].startswith("default-src 'self'")
    plain = app_client.get("/advertisers/a", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.text == res.text
    form = app_client.get("/signin", headers={"Accept-Encoding": "gzip"})
    assert form.headers["content-encoding"] == "gzip"
    assert "lotlens_signin=" in form.headers["set-cookie"]  # the sign-in form's CSRF cookie survives
    api = app_client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in api.headers  # the API's answers are left as they are


def test_the_sweep_table_compares_with_the_champion_on_the_same_test_set(site: Site, app_client: TestClient) -> None:
    registry = Registry(site.store)
    champion = next(m for m in registry.models() if m.version == registry.alias("champion"))
    t = champion.metrics["type"]
    folder = site.settings.data_dir / "sweeps" / "sw-2"
    folder.mkdir(parents=True)
    row = {
        "name": "lr-c2", "score": 3.0, "type_accuracy": t["accuracy"] + 0.012, "placeholder_recall": 1.0,
        "color_accuracy": None, "worst_group": 0.9, "version": "lotlens-candidate",
    }  # fmt: skip
    (folder / "comparison.json").write_text(json.dumps({"sweep": "sw-2", "dataset": champion.dataset, "rows": [row]}))
    sign_in(app_client, "staff")
    page = app_client.get("/models").text
    assert 'data-testid="different-test-sets"' not in page
    assert 'data-testid="delta-type_accuracy">+1.2 pt<' in page
    # the candidate's registry scores were taken on ds-test: "the same test set" only if the sweep's is too
    assert ("the same test set)" in page) == (champion.dataset == "ds-test")
    assert "registry, " in page
