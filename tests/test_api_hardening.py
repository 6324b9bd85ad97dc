"""The API's edge under bad input: body caps, keys before bodies, whole-or-nothing fixes, retries
with an Idempotency-Key, input errors as 422 problems, and the batch deadline. A pipeline whose
answers the test sets stands in for the model (these tests are about the edge, not the model)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from lotlens.api import create_app
from lotlens.config import ApiKey, Settings
from lotlens.store import Store

from fakes import FakePipeline
from httpserver import serve_app

KEYS = {
    "staff": ApiKey(name="ana (staff)", key="t" * 32, role="staff"),
    "a": ApiKey(name="dealer-a", key="a" * 32, role="advertiser:a"),
}


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who].key}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        allow_private_addresses=True,
        api_keys=list(KEYS.values()),
        fetch_retries=0,
        verify_fraction=0.0,
        max_body_bytes=1_000_000,
        batch_deadline=2.0,
    )


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store, FakePipeline())) as c:  # type: ignore[arg-type]
        yield c


@pytest.fixture
def live(settings: Settings) -> Iterator[str]:
    """The app served by a real uvicorn, for what a test client cannot show (streaming bodies)."""
    store = Store.from_url(settings.resolved_database_url())
    yield from serve_app(create_app(settings, store, FakePipeline()))  # type: ignore[arg-type]


def image_key(client: TestClient, server: str, name: str = "blue") -> str:
    body = {"advertiser": "a", "images": [{"url": f"{server}/img/h-{name}.jpg?name={name}"}]}
    res = client.post("/v1/classify", json=body, headers=auth("a"))
    assert res.status_code == 200, res.text
    key: str = res.json()["results"][0]["image_key"]
    return key


def test_a_huge_body_gets_its_413_at_once_and_health_stays_quick(live: str) -> None:
    body = b'{"advertiser": "a", "images": [' + b" " * (60 * 1024 * 1024) + b"]}"
    t0 = time.perf_counter()
    res = httpx.post(f"{live}/v1/classify", content=body, headers=auth("a"), timeout=30)
    assert res.status_code == 413
    assert res.headers["content-type"] == "application/problem+json"
    assert res.json()["code"] == "too_large"
    assert time.perf_counter() - t0 < 2.0
    assert httpx.get(f"{live}/healthz", timeout=5).status_code == 200


def test_a_chunked_body_is_cut_off_at_the_limit(live: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"advertiser": "a", "images": ['
        for _ in range(40):
            yield b" " * 100_000  # 4 MB in all, no Content-Length
        yield b"]}"

    res = httpx.post(f"{live}/v1/classify", content=chunks(), headers=auth("a"), timeout=30)
    assert res.status_code == 413


def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(live: str) -> None:
    body = b'{"advertiser": "a", "images": [' + b" " * 900_000 + b"]}"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEYS["a"].key}):
        res = httpx.post(f"{live}/v1/classify", content=body, headers=headers, timeout=30)
        assert res.status_code == 401
        assert res.json()["code"] == "unauthorized"
        assert res.headers["www-authenticate"] == "Bearer"


def test_a_fix_with_one_bad_field_writes_nothing(client: TestClient, server: str) -> None:
    key = image_key(client, server)
    res = client.post("/v1/fixes", json={"image_key": key, "type": "Dealer", "color": "Beige"}, headers=auth("a"))
    assert res.status_code == 422
    assert res.json()["code"] == "unknown_color"
    assert client.get("/v1/fixes", params={"advertiser": "a"}, headers=auth("staff")).json()["fixes"] == []


def test_retries_with_one_idempotency_key_write_one_fix(client: TestClient, server: str) -> None:
    key = image_key(client, server)
    body = {"image_key": key, "type": "Stock", "color": "Silver"}
    headers = auth("a") | {"Idempotency-Key": "retry-1"}
    answers = [client.post("/v1/fixes", json=body, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[0].json() == answers[2].json()
    assert (answers[0].json()["type"], answers[0].json()["color"]) == ("Stock", "Grey")
    history = client.get("/v1/fixes", params={"advertiser": "a"}, headers=auth("staff")).json()["fixes"]
    assert len(history) == 2  # type and color, once
    other = client.post("/v1/fixes", json=body | {"type": "Dealer"}, headers=headers)
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_conflict")
    assert len(client.get("/v1/fixes", params={"advertiser": "a"}, headers=auth("staff")).json()["fixes"]) == 2
    # another key, or another caller with the same key, is another request
    staff_body = body | {"advertiser": "a"}
    assert (
        client.post("/v1/fixes", json=staff_body, headers=auth("staff") | {"Idempotency-Key": "retry-1"}).status_code
        == 201
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("get", "/v1/fixes", {"params": {"advertiser": "a\x00b"}}),
        ("post", "/v1/review/18446744073709551616", {"json": {"action": "reject"}}),
        ("post", "/v1/review/0", {"json": {"action": "reject"}}),
        ("post", "/v1/fixes", {"content": b'{"image_key": "c:\\ud800", "type": "Stock"}'}),
        ("post", "/v1/fixes", {"json": {"image_key": "c:abc", "type": "Stock", "comment": "a\x00b"}}),
        ("post", "/v1/classify", {"json": {"advertiser": "a\x00", "images": []}}),
        ("post", "/v1/classify", {"content": b'{"advertiser": "\\udc00", "images": []}'}),
    ],
)
def test_input_errors_are_422_problems(client: TestClient, method: str, path: str, kwargs: dict[str, object]) -> None:
    res = getattr(client, method)(path, headers=auth("staff") | {"Content-Type": "application/json"}, **kwargs)
    assert res.status_code == 422, res.text
    assert res.headers["content-type"] == "application/problem+json"
    assert res.json()["status"] == 422


def test_a_lone_surrogate_is_malformed_text_and_says_where(client: TestClient) -> None:
    body = b'{"advertiser": "a", "images": [{"url": "http://h.test/\\ud800.jpg"}]}'
    res = client.post("/v1/classify", content=body, headers=auth("a") | {"Content-Type": "application/json"})
    assert res.status_code == 422
    assert res.json()["errors"][0]["loc"] == ["body", "images", "0", "url"]


def test_odd_strings_in_a_batch_are_that_image_s_problem(client: TestClient, server: str) -> None:
    body = (
        b'{"advertiser": "a", "images": [{"url": "http://h.test/\\u0000.jpg", "vehicle_id": "v\\u0000\\u0007",'
        b' "color": "\\u0000"}, {"url": "' + f"{server}/img/odd.jpg?name=blue".encode() + b'"}]}'
    )
    res = client.post("/v1/classify", content=body, headers=auth("a") | {"Content-Type": "application/json"})
    assert res.status_code == 200, res.text
    assert [r["status"] for r in res.json()["results"]] == ["skipped", "ok"]


def test_what_the_deadline_leaves_is_skipped_and_the_rest_answered(client: TestClient, server: str) -> None:
    # One GET of a new URL (no HEAD first) that outlasts the 2 s deadline.
    slow = [{"url": f"{server}/slow.jpg?n={i}&wait=3"} for i in range(3)]
    images = [*slow, {"url": f"{server}/img/dl.jpg?name=blue"}]
    t0 = time.perf_counter()
    res = client.post("/v1/classify", json={"advertiser": "a", "images": images}, headers=auth("a"))
    took = time.perf_counter() - t0
    assert res.status_code == 200
    results = res.json()["results"]
    assert results[3]["status"] == "ok"
    assert {r["reason"] for r in results[:3]} == {"deadline"}
    assert took < 2.0 + 1.5  # the deadline (2 s) and the answer, not the slow server's time


def test_openapi_declares_bearer_enums_and_operation_ids(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    result = spec["components"]["schemas"]["ResultOut"]["properties"]
    assert "Placeholder" in str(result["type"])
    assert "Grey" in str(result["color"])
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"classify", "add_fix", "list_fixes", "get_image", "promote", "rollback", "healthz"} <= ids


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    mine = client.get("/healthz", headers={"X-Request-ID": "scrape-2026-12-03-0001"})
    assert mine.headers["x-request-id"] == "scrape-2026-12-03-0001"
    forged = client.get("/healthz", headers={"X-Request-ID": "x injected log line"})
    assert forged.headers["x-request-id"] != "x injected log line"
    assert len(client.get("/v1/fixes").headers["x-request-id"]) >= 16  # made here, even for a 401
