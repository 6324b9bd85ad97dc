"""Cursor paging of the list endpoints (`/v1/fixes`, `/v1/review`, `/v1/models`, `/v1/promotions`):
every row exactly once and in order across pages, also where sort keys tie; `next_cursor` null on
the last page; limit bounds; a bad cursor is a 422 `bad_cursor`; an advertiser key never sees
another advertiser's name on any page. The expected orders are built here from what each test
wrote and the times it set, not read back from the code under test."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from lotlens.api import create_app
from lotlens.config import ApiKey, Settings
from lotlens.store import Store
from lotlens.store.registry import Registry
from lotlens.store.review import ReviewQueue
from lotlens.store.tables import ModelRow

from fakes import FakePipeline

KEYS = {
    "admin": ApiKey(name="root (admin)", key="r" * 32, role="admin"),
    "a": ApiKey(name="dealer-a", key="a" * 32, role="advertiser:a"),
}
SCORES = {"type": {"Dealer": 0.9, "Stock": 0.05, "Placeholder": 0.05}, "color": {"Red": 0.8}}
BASE = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who].key}"}


@pytest.fixture
def client(tmp_path: Path, store: Store) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, api_keys=list(KEYS.values()), fetch_retries=0, verify_fraction=0.0)
    with TestClient(create_app(settings, store, FakePipeline())) as c:  # type: ignore[arg-type]
        yield c


def walk(client: TestClient, path: str, items: str, who: str, limit: int, **params: Any) -> tuple[list[Any], int]:
    """Every row of a list, page by page; and the number of pages."""
    rows: list[Any] = []
    cursor = None
    for pages in range(1, 200):
        query = params | {"limit": limit} | ({"cursor": cursor} if cursor else {})
        res = client.get(path, params=query, headers=auth(who))
        assert res.status_code == 200, res.text
        body = res.json()
        assert 0 < len(body[items]) <= limit or (pages == 1 and not body[items])
        rows += body[items]
        cursor = body["next_cursor"]
        if cursor is None:
            return rows, pages
        assert isinstance(cursor, str)
        assert cursor
    raise AssertionError("paging did not end")


def _key(i: int) -> str:
    return "c:" + f"{i:064x}"


Written = list[tuple[datetime, int, Any, str]]


@pytest.fixture
def fixes(store: Store, monkeypatch: pytest.MonkeyPatch) -> Written:
    """Fixes on 8 images a shows (b shows 4 of them too): a's own, b's own, and staff's global
    fixes made in b's view, written at times that tie in threes and run against the ids.
    Returns (time, id, advertiser, scope) of each, in the order the list must have."""
    times = iter([BASE + timedelta(seconds=(16 - n) // 3) for n in range(16)])
    monkeypatch.setattr("lotlens.store.fixes.now", lambda: next(times))  # the fixes table is append-only
    written = []
    for i in range(8):
        store.put_image(_key(i), phash=i)
        store.put_prediction(_key(i), "m1", "Dealer", "Red", SCORES)
        store.see("a", f"https://cdn.x/{i}.jpg", _key(i))
        if i % 2:
            store.see("b", f"https://cdn.y/{i}.jpg", _key(i))
            written.append(
                store.add_fix(_key(i), "color", "Blue", actor="b1", role="b", scope="advertiser", advertiser="b")
            )
            written.append(
                store.add_fix(_key(i), "type", "Stock", actor="s", role="staff", scope="global", advertiser="b")
            )
        written.append(
            store.add_fix(_key(i), "type", "Dealer", actor="a1", role="a", scope="advertiser", advertiser="a")
        )
    assert next(times, None) is None
    return sorted((f.created_at, f.id, f.advertiser, f.scope) for f in written)


def test_fix_pages_hold_every_row_once_in_order(client: TestClient, fixes: Written) -> None:
    assert len(fixes) == 16
    rows, pages = walk(client, "/v1/fixes", "fixes", "admin", limit=3)
    assert [r["id"] for r in rows] == [i for _, i, _, _ in fixes]
    assert [datetime.fromisoformat(r["time"]) for r in rows] == [t for t, _, _, _ in fixes]
    assert pages == 6
    one, _ = walk(client, "/v1/fixes", "fixes", "admin", limit=1)
    assert [r["id"] for r in one] == [i for _, i, _, _ in fixes]
    whole = client.get("/v1/fixes", params={"limit": 16}, headers=auth("admin")).json()
    assert (len(whole["fixes"]), whole["next_cursor"]) == (16, None)  # a full last page has no next one


def test_fix_pages_keep_the_filters(client: TestClient, fixes: Written) -> None:
    own = [i for _, i, adv, scope in fixes if adv == "b" and scope == "advertiser"]
    rows, _ = walk(client, "/v1/fixes", "fixes", "admin", limit=2, advertiser="b")
    assert [r["id"] for r in rows] == [i for _, i, adv, _ in fixes if adv == "b"]  # b's own and the global ones
    assert len(own) == 4
    since = BASE + timedelta(seconds=3)
    rows, _ = walk(client, "/v1/fixes", "fixes", "admin", limit=2, since=since.isoformat())
    assert [r["id"] for r in rows] == [i for t, i, _, _ in fixes if t >= since]


def test_an_advertiser_paging_fixes_never_sees_another_advertisers_name(client: TestClient, fixes: Written) -> None:
    rows, pages = walk(client, "/v1/fixes", "fixes", "a", limit=2)
    visible = [(i, adv if adv == "a" else None) for _, i, adv, scope in fixes if adv == "a" or scope == "global"]
    assert len(visible) == 12
    assert pages == 6
    assert [(r["id"], r["advertiser"]) for r in rows] == visible
    assert all(r["advertiser"] != "b" for r in rows)
    # a cursor from a staff walk grants nothing more: the next page is still a's view
    staff = client.get("/v1/fixes", params={"limit": 1}, headers=auth("admin")).json()
    rest = client.get("/v1/fixes", params={"cursor": staff["next_cursor"], "limit": 1000}, headers=auth("a")).json()
    assert all(r["advertiser"] in ("a", None) for r in rest["fixes"])
    assert client.get("/v1/fixes", params={"advertiser": "b", "limit": 2}, headers=auth("a")).status_code == 403


def test_review_pages_hold_every_item_once_in_order(client: TestClient, store: Store) -> None:
    queue = ReviewQueue(store)
    scores = [0.5, 0.1 + 0.2, 0.9, 0.5, 0.3, 0.5, 0.1, 0.9, 0.0, 0.5, 0.1 + 0.2]
    for n in [*range(len(scores)), 99]:
        store.put_image(_key(n))
    for n, score in enumerate(scores):
        kind = "conflict" if n % 4 == 0 else "doubt"
        queue.add("ds-1", _key(n), "color", kind, [{"value": "Blue", "advertiser": "a"}], None, score)
    queue.add("ds-2", _key(99), "color", "doubt", [{"value": "Blue", "advertiser": "a"}], None, 1.0)
    expected = [
        _key(n) for n in sorted(range(len(scores)), key=lambda n: (n % 4 != 0, -scores[n], n))
    ]  # conflicts first, then by score, highest first, then as added
    rows, pages = walk(client, "/v1/review", "items", "admin", limit=4, dataset="ds-1")
    assert [r["content_key"] for r in rows] == expected
    assert pages == 3
    # deciding items between pages moves nothing across the cursor
    first = client.get("/v1/review", params={"dataset": "ds-1", "limit": 4}, headers=auth("admin")).json()
    for item in first["items"]:
        res = client.post(f"/v1/review/{item['id']}", json={"action": "reject"}, headers=auth("admin"))
        assert res.status_code == 200
    rest = client.get(
        "/v1/review", params={"dataset": "ds-1", "limit": 100, "cursor": first["next_cursor"]}, headers=auth("admin")
    ).json()
    assert [r["content_key"] for r in rest["items"]] == expected[4:]
    assert rest["next_cursor"] is None
    rejected, _ = walk(client, "/v1/review", "items", "admin", limit=3, status="rejected")
    assert [r["content_key"] for r in rejected] == expected[:4]
    pending, _ = walk(client, "/v1/review", "items", "admin", limit=5)  # every dataset
    left = [(n % 4 != 0, -scores[n], n) for n in range(len(scores)) if _key(n) in expected[4:]]
    assert [r["content_key"] for r in pending] == [_key(n) for *_, n in sorted([*left, (True, -1.0, 99)])]


def test_models_and_promotions_page_in_order(client: TestClient, store: Store) -> None:
    reg = Registry(store)
    before = [m.version for m in reg.models()]  # a model the app registered at start, if any
    versions = [f"m-{n:02d}" for n in (7, 3, 11, 0, 5, 9, 1)]
    for v in versions:
        reg.add(v, "lotlens", f"/models/{v}", {"f1": 0.5}, registered_by="test")
    times = {v: BASE + timedelta(days=1 + n % 2) for n, v in enumerate(versions)}  # ties: order by version
    with store._session.begin() as s:
        for v, t in times.items():
            s.execute(update(ModelRow).where(ModelRow.version == v).values(created_at=t))
    rows, pages = walk(client, "/v1/models", "models", "admin", limit=2)
    mine = [m["version"] for m in rows if m["version"] in times]
    assert mine == sorted(versions, key=lambda v: (times[v], v))
    assert sorted(m["version"] for m in rows) == sorted(before + versions)
    page = client.get("/v1/models", params={"limit": 1}, headers=auth("admin")).json()
    assert set(page) == {"serving", "aliases", "models", "next_cursor"}

    moved = ["m-03", "m-07", "m-00", "m-03", "m-05"]
    for v in moved:
        reg.promote(v, actor="root", reason=None)
    reg.promote("m-11", actor="root", reason=None, alias="challenger")
    log, pages = walk(client, "/v1/promotions", "promotions", "admin", limit=2)
    assert [p["to_version"] for p in log] == [*moved, "m-11"]
    assert pages == 3
    champion, _ = walk(client, "/v1/promotions", "promotions", "admin", limit=4, alias="champion")
    assert [p["to_version"] for p in champion] == moved
    assert client.get("/v1/promotions", headers=auth("a")).status_code == 403


@pytest.mark.parametrize("path", ["/v1/fixes", "/v1/review", "/v1/models", "/v1/promotions"])
@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten"])
def test_limit_out_of_bounds_is_a_422(client: TestClient, path: str, limit: str) -> None:
    res = client.get(path, params={"limit": limit}, headers=auth("admin"))
    assert (res.status_code, res.json()["code"]) == (422, "invalid_request")


@pytest.mark.parametrize("path", ["/v1/fixes", "/v1/review", "/v1/models", "/v1/promotions"])
def test_limit_bounds_are_accepted(client: TestClient, path: str) -> None:
    for limit in ("1", "1000"):
        assert client.get(path, params={"limit": limit}, headers=auth("admin")).status_code == 200


def _b64(payload: Any) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


T = "2026-01-02T03:04:05+00:00"
BAD = {
    "not base64": "!!!",
    "base64 of junk": _b64(b"\xff\xfe{"),
    "not an array": _b64({"t": T, "id": 1}),
    "empty": _b64([]),
    "unicode": "čur",
    "too long": "A" * 600,
    "nan": _b64(b'["review", 1, NaN, 3]'),
}
GOOD_SHAPE = {
    "/v1/fixes": ["fixes", T, 1],
    "/v1/review": ["review", 1, 0.5, 1],
    "/v1/models": ["models", T, "m-1"],
    "/v1/promotions": ["promotions", T, 1],
}


WRONG = {  # per type of a cursor value: what a tampered cursor might hold there instead
    str: [1, None, [1], "x" * 300],
    int: ["x", -1, True, None, 2**63, 1.5, [1]],
    float: ["x", True, None, [1]],
}
WRONG_TIME = ["x", 1, None, "2026-01-02T03:04:05", "2026-13-45T00:00:00+00:00"]


def _tampered(good: list[Any]) -> list[list[Any]]:
    """The list's own cursor with one thing wrong each: the list, the length, or one value."""
    out = [["other", *good[1:]], good[:-1], [*good, 1]]
    for n in range(1, len(good)):
        wrong = WRONG_TIME if good[n] == T else WRONG[type(good[n])]
        out += [[*good[:n], bad, *good[n + 1 :]] for bad in wrong]
    return out


@pytest.mark.parametrize("path", list(GOOD_SHAPE))
def test_a_bad_or_tampered_cursor_is_a_422_bad_cursor(client: TestClient, path: str) -> None:
    good = GOOD_SHAPE[path]
    assert client.get(path, params={"cursor": _b64(good)}, headers=auth("admin")).status_code == 200
    cursors = [*BAD.values(), *(_b64(t) for t in _tampered(good))]
    assert len(cursors) >= 17
    for cursor in cursors:
        res = client.get(path, params={"cursor": cursor}, headers=auth("admin"))
        assert res.status_code == 422, (cursor, res.text)
        assert res.headers["content-type"].startswith("application/problem+json")
        assert res.json()["code"] == "bad_cursor", cursor


def test_a_cursor_of_another_list_is_refused(client: TestClient, store: Store) -> None:
    reg = Registry(store)
    for v in ("m-1", "m-2"):
        reg.add(v, "lotlens", f"/models/{v}", {}, registered_by="test")
        reg.promote(v, actor="root", reason=None)
    cursor = client.get("/v1/promotions", params={"limit": 1}, headers=auth("admin")).json()["next_cursor"]
    assert cursor is not None
    res = client.get("/v1/fixes", params={"cursor": cursor}, headers=auth("admin"))
    assert (res.status_code, res.json()["code"]) == (422, "bad_cursor")


def test_openapi_declares_the_pages(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ops = {path: spec["paths"][path]["get"] for path in GOOD_SHAPE}
    assert [op["operationId"] for op in ops.values()] == ["list_fixes", "list_review", "list_models", "list_promotions"]
    for op in ops.values():
        params = {p["name"]: p["schema"] for p in op["parameters"]}
        assert params["limit"]["minimum"] == 1
        assert params["limit"]["maximum"] == 1000
        assert params["limit"]["default"] == 100
        assert "cursor" in params
    schemas = spec["components"]["schemas"]
    for name in ("FixPage", "ReviewPage", "ModelsOut", "PromotionPage"):
        assert "next_cursor" in schemas[name]["required"]
