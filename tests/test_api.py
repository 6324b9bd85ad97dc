"""The HTTP API through FastAPI's test client: a real store, the bundled model, a real local CDN."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lotlens.api import create_app
from lotlens.config import ApiKey, Settings
from lotlens.labels import TYPES
from lotlens.store import Store
from lotlens.vision import Pipeline

KEYS = {
    "scraper": ApiKey(name="scraper-1", key="s" * 32, role="scraper"),
    "staff": ApiKey(name="ana (staff)", key="t" * 32, role="staff"),
    "a": ApiKey(name="dealer-a", key="a" * 32, role="advertiser:a"),
    "b": ApiKey(name="dealer-b", key="b" * 32, role="advertiser:b"),
}


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who].key}"}


@pytest.fixture
def client(tmp_path: Path, pipeline: Pipeline, store: Store) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        allow_private_addresses=True,
        api_keys=list(KEYS.values()),
        max_batch=5,
        fetch_retries=0,
        verify_fraction=0.0,
    )
    with TestClient(create_app(settings, store, pipeline)) as c:
        yield c


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/fixes", "/v1/images/{image_key}", "/healthz", "/readyz", "/metrics"} <= set(paths)


def test_keys_are_required_and_checked(client: TestClient, server: str) -> None:
    body = {"advertiser": "a", "images": [{"url": f"{server}/car.jpg"}]}
    assert client.post("/v1/classify", json=body).status_code == 401
    assert client.post("/v1/classify", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert (
        client.post("/v1/classify", json=body, headers={"Authorization": f"Basic {KEYS['a'].key}"}).status_code == 401
    )
    assert client.post("/v1/classify", json=body, headers=auth("b")).status_code == 403
    assert client.post("/v1/classify", json=body, headers=auth("a")).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_classify_fix_and_history(client: TestClient, server: str) -> None:
    body = {
        "advertiser": "a",
        "images": [{"url": f"{server}/img/api.jpg?name=blue", "vehicle_id": "v1"}, {"url": f"{server}/missing.jpg"}],
    }
    res = client.post("/v1/classify", json=body, headers=auth("scraper"))
    assert res.status_code == 200
    ok, missing = res.json()["results"]
    assert (ok["status"], ok["source"]) == ("ok", "model")
    assert set(ok["scores"]["type"]) == set(TYPES)
    assert ok["model_version"]
    assert (missing["status"], missing["reason"]) == ("skipped", "http_404")
    key = ok["image_key"]
    new_type = next(t for t in TYPES if t != ok["type"])

    fix = client.post("/v1/fixes", json={"image_key": key, "type": new_type, "comment": "wrong"}, headers=auth("a"))
    assert fix.status_code == 201, fix.text
    out = fix.json()
    assert (out["type"], out["source"]) == (new_type, "manual")
    [entry] = out["history"]
    assert (entry["actor"], entry["old"], entry["new"], entry["advertiser"]) == ("dealer-a", ok["type"], new_type, "a")
    assert "a" * 32 not in fix.text  # the actor is the key's name, never the key

    again = client.post("/v1/classify", json=body, headers=auth("scraper")).json()["results"][0]
    assert (again["type"], again["source"]) == (new_type, "manual")
    # b shares the CDN but not a's fix; b cannot read or fix a's image.
    body_b = {"advertiser": "b", "images": body["images"][:1]}
    for_b = client.post("/v1/classify", json=body_b, headers=auth("b")).json()["results"][0]
    assert (for_b["type"], for_b["source"]) == (ok["type"], "cache")
    assert client.get(f"/v1/images/{key}", params={"advertiser": "a"}, headers=auth("b")).status_code == 403
    assert (
        client.post(
            "/v1/fixes", json={"image_key": key, "type": "Stock", "advertiser": "a"}, headers=auth("b")
        ).status_code
        == 403
    )
    # a reads its answer and history; b's own view is untouched.
    mine = client.get(f"/v1/images/{key}", headers=auth("a")).json()
    assert (mine["type"], len(mine["history"])) == (new_type, 1)
    assert client.get(f"/v1/images/{key}", headers=auth("b")).json()["type"] == ok["type"]
    history = client.get("/v1/fixes", params={"advertiser": "a"}, headers=auth("staff")).json()["fixes"]
    assert [(h["field"], h["new"]) for h in history] == [("type", new_type)]
    assert client.get("/v1/fixes", params={"advertiser": "a"}, headers=auth("b")).status_code == 403
    assert client.get("/v1/fixes", params={"since": "2999-01-01T00:00:00Z"}, headers=auth("staff")).json() == {
        "fixes": [],
        "next_cursor": None,
    }


def test_only_staff_make_global_fixes(client: TestClient, server: str) -> None:
    body = {"advertiser": "a", "images": [{"url": f"{server}/img/g.jpg?name=yellow"}]}
    key = client.post("/v1/classify", json=body, headers=auth("a")).json()["results"][0]["image_key"]
    glob = {"image_key": key, "color": "Green", "scope": "global"}
    assert client.post("/v1/fixes", json=glob, headers=auth("a")).status_code == 403
    assert client.post("/v1/fixes", json=glob, headers=auth("scraper")).status_code == 403
    res = client.post("/v1/fixes", json=glob, headers=auth("staff"))
    assert res.status_code == 201
    assert res.json()["history"][0]["scope"] == "global"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"advertiser": "a"}, 422),
        ({"advertiser": "a", "images": [{"nourl": 1}]}, 422),
        ({"advertiser": "", "images": []}, 422),
        ({"advertiser": "a", "images": [{"url": "http://x/y.jpg"}] * 6}, 413),
    ],
)
def test_malformed_or_oversized_requests(client: TestClient, body: dict[str, object], status: int) -> None:
    res = client.post("/v1/classify", json=body, headers=auth("staff"))
    assert res.status_code == status
    assert res.json()["detail"]


def test_bad_fixes(client: TestClient, server: str) -> None:
    body = {"advertiser": "a", "images": [{"url": f"{server}/img/bf.jpg?name=car"}]}
    key = client.post("/v1/classify", json=body, headers=auth("a")).json()["results"][0]["image_key"]
    assert client.post("/v1/fixes", json={"image_key": key}, headers=auth("a")).status_code == 422
    assert client.post("/v1/fixes", json={"image_key": key, "color": "Teal"}, headers=auth("a")).status_code == 422
    assert (
        client.post(
            "/v1/fixes", json={"image_key": "c:" + "0" * 64, "type": "Stock", "advertiser": "a"}, headers=auth("staff")
        ).status_code
        == 404
    )
    assert client.post("/v1/fixes", content=b"{not json", headers=auth("a")).status_code == 422


def test_readyz_and_metrics(client: TestClient, server: str) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["store"] == "ok"
    body = {
        "advertiser": "a",
        "images": [{"url": f"{server}/img/m.jpg?name=car&etag=%22m%22"}, {"url": f"{server}/missing.jpg"}],
    }
    client.post("/v1/classify", json=body, headers=auth("a"))
    client.post("/v1/classify", json=body, headers=auth("a"))
    text = client.get("/metrics").text
    assert 'lotlens_cache_hits_total{kind="header"} 1.0' in text
    assert 'lotlens_skipped_total{reason="http_404"} 2.0' in text
    assert 'lotlens_requests_total{path="/v1/classify",status="200"} 2.0' in text
    assert "lotlens_model_info{version=" in text
    assert "lotlens_inference_seconds_count 2.0" in text


def test_without_keys_everyone_is_local_admin(tmp_path: Path, pipeline: Pipeline) -> None:
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings, Store.from_url(settings.resolved_database_url()), pipeline)) as c:
        assert c.get("/v1/fixes").status_code == 200


def test_review_endpoints(client: TestClient, server: str) -> None:
    from lotlens.store.review import ReviewQueue

    body = {"advertiser": "a", "images": [{"url": f"{server}/img/rv.jpg?name=blue"}]}
    key = client.post("/v1/classify", json=body, headers=auth("a")).json()["results"][0]["image_key"]
    store = client.app.state.lotlens.store  # type: ignore[attr-defined]
    ReviewQueue(store).add(
        "ds-test",
        key,
        "color",
        "conflict",
        [{"value": "Blue", "advertiser": "a"}, {"value": "Green", "advertiser": "b"}],
        None,
        3.0,
    )
    assert client.get("/v1/review", headers=auth("a")).status_code == 403
    [item] = client.get("/v1/review", headers=auth("staff")).json()["items"]
    assert (item["kind"], item["field"]) == ("conflict", "color")
    res = client.post(f"/v1/review/{item['id']}", json={"action": "relabel", "value": "green"}, headers=auth("staff"))
    assert res.status_code == 200
    assert (res.json()["status"], res.json()["decided_value"], res.json()["decided_by"]) == (
        "relabelled",
        "Green",
        "ana (staff)",
    )
    assert client.get("/v1/review", headers=auth("staff")).json() == {"items": [], "next_cursor": None}
    assert client.post("/v1/review/999", json={"action": "reject"}, headers=auth("staff")).status_code == 404
    assert client.post(f"/v1/review/{item['id']}", json={"action": "accept"}, headers=auth("staff")).status_code == 422
    assert client.post(f"/v1/review/{item['id']}", json={"action": "burn"}, headers=auth("staff")).status_code == 422


def test_vehicle_doubts_are_listed_and_decided_through_the_review_endpoints(client: TestClient, server: str) -> None:
    from lotlens.store.review import VEHICLE_QUEUE, ReviewQueue, VehicleDoubt

    body = {"advertiser": "a", "images": [{"url": f"{server}/img/vd.jpg?name=blue", "vehicle_id": "V1"}]}
    key = client.post("/v1/classify", json=body, headers=auth("a")).json()["results"][0]["image_key"]
    store = client.app.state.lotlens.store  # type: ignore[attr-defined]
    ReviewQueue(store).add_vehicle_doubts([VehicleDoubt(key, "a", "V1", "Grey", "Black", 0.9)])
    [item] = client.get("/v1/review", params={"dataset": VEHICLE_QUEUE}, headers=auth("staff")).json()["items"]
    assert (item["kind"], item["field"], item["model_value"]) == ("doubt", "color", "Grey")
    assert (item["candidates"][0]["value"], item["candidates"][0]["vehicle_id"]) == ("Black", "V1")
    res = client.post(f"/v1/review/{item['id']}", json={"action": "accept"}, headers=auth("staff"))
    assert (res.status_code, res.json()["decided_value"]) == (200, "Black")


def test_odd_colors_and_urls_never_fail_the_batch(client: TestClient, server: str) -> None:
    images = [
        {"url": f"{server}/img/o1.jpg?name=blue&etag=%22o1%22", "color": "Beige"},
        {"url": f"{server}/img/o2.jpg?name=blue&etag=%22o2%22", "color": "Silver"},
        {"url": "http://[fd00::1]/x.jpg"},
        {"url": "javascript:alert(1)", "vehicle_id": "v" * 500},
        {"url": f"{server}/redirect?to=http://127.0.0.1:99999/x.jpg"},
    ]
    for _ in range(2):  # the second time from the cache: it must not fail either
        r = client.post("/v1/classify", json={"advertiser": "a", "images": images}, headers=auth("a"))
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["status"] for x in results] == ["ok", "ok", "skipped", "skipped", "skipped"]
        assert [x["scraped_color"] for x in results[:2]] == ["Beige", "Silver"]
        assert results[1]["color"] in ("Grey", None)  # Silver is Grey (None only if a Placeholder)
