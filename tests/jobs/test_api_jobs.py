"""The job API in-process: SQLite, serve's own pool (no broker), the bundled model, a local CDN."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from receivers import SECRET, image_host, receiver

from lotlens.api import create_app
from lotlens.config import ApiKey, Settings
from lotlens.store import Store
from lotlens.vision import Pipeline

from httpserver import HITS

KEYS = {
    "scraper": ApiKey(name="scraper-1", key="s" * 32, role="scraper"),
    "scraper2": ApiKey(name="scraper-2", key="r" * 32, role="scraper"),
    "staff": ApiKey(name="ana (staff)", key="t" * 32, role="staff"),
    "a": ApiKey(name="dealer-a", key="a" * 32, role="advertiser:a"),
    "b": ApiKey(name="dealer-b", key="b" * 32, role="advertiser:b"),
}
WAIT = 120  # seconds a job may take here before a test gives up


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who].key}"}


MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(tmp_path: Path, pipeline: Pipeline) -> Iterator[MakeClient]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = Settings(
            **{
                "data_dir": tmp_path,
                "allow_private_addresses": True,
                "api_keys": list(KEYS.values()),
                "fetch_retries": 0,
                "verify_fraction": 0.0,
                "job_chunk": 2,
                "max_job": 10,
                "webhook_secret": SECRET,
                "webhook_backoff": 0.05,
                **overrides,
            }
        )
        store = Store.from_url(settings.resolved_database_url())
        client = TestClient(create_app(settings, store, pipeline))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


def wait(client: TestClient, job_id: str) -> dict[str, Any]:
    """The job's status once the pool has nothing left to do for it."""
    assert client.app.state.jobs.wait(job_id, WAIT)  # type: ignore[attr-defined]
    res = client.get(f"/v1/jobs/{job_id}", headers=auth("staff"))
    assert res.status_code == 200
    body: dict[str, Any] = res.json()
    return body


def submit(client: TestClient, who: str, advertiser: str, urls: list[str], **extra: Any) -> dict[str, Any]:
    headers = auth(who) | extra.pop("headers", {})
    body = {"advertiser": advertiser, "images": [{"url": u} for u in urls], **extra}
    res = client.post("/v1/jobs", json=body, headers=headers)
    assert res.status_code == 202, res.text
    assert res.headers["location"] == f"/v1/jobs/{res.json()['id']}"
    out: dict[str, Any] = res.json()
    return out


def test_a_job_answers_every_url_in_input_order(client: TestClient, server: str) -> None:
    urls = [
        f"{server}/img/j0.jpg?name=car",
        f"{server}/missing.jpg",
        f"{server}/img/j2.jpg?name=blue",
        f"{server}/html.jpg",
        f"{server}/img/j4.jpg?name=placeholder",
    ]
    job = submit(client, "scraper", "a", urls)
    assert (job["status"], job["total"], job["processed"]) == ("queued", 5, 0)
    done = wait(client, job["id"])
    assert (done["status"], done["processed"], done["ok"], done["skipped"]) == ("done", 5, 3, 2)
    assert done["started_at"]
    assert done["finished_at"]

    first = client.get(f"/v1/jobs/{job['id']}/results?limit=2", headers=auth("scraper")).json()
    assert [r["url"] for r in first["results"]] == urls[:2]
    assert first["next_cursor"]
    rest = client.get(
        f"/v1/jobs/{job['id']}/results?limit=100&cursor={first['next_cursor']}", headers=auth("scraper")
    ).json()
    assert rest["next_cursor"] is None
    results = first["results"] + rest["results"]
    assert [r["url"] for r in results] == urls
    assert [r["status"] for r in results] == ["ok", "skipped", "ok", "skipped", "ok"]
    assert (results[1]["reason"], results[3]["reason"]) == ("http_404", "not_an_image")
    assert results[4]["type"] == "Placeholder"
    # The same answers /v1/classify gives for the same images (now from the cache).
    same = client.post(
        "/v1/classify", json={"advertiser": "a", "images": [{"url": u} for u in urls]}, headers=auth("scraper")
    ).json()["results"]
    for r, c in zip(results, same, strict=True):
        assert (r["status"], r["type"], r["color"], r["image_key"]) == (
            c["status"],
            c["type"],
            c["color"],
            c["image_key"],
        )

    lines = client.get(f"/v1/jobs/{job['id']}/results", headers=auth("scraper") | {"Accept": "application/x-ndjson"})
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in lines.text.splitlines()] == results


def test_idempotency_key_returns_the_first_job(client: TestClient, server: str) -> None:
    urls = [f"{server}/img/i0.jpg?name=car"]
    key = {"Idempotency-Key": "scrape-2026-12-03-a"}
    first = submit(client, "scraper", "a", urls, headers=key)
    again = submit(client, "scraper", "a", urls, headers=key)
    assert again["id"] == first["id"]
    other = client.post(
        "/v1/jobs", json={"advertiser": "a", "images": [{"url": f"{server}/car.jpg"}]}, headers=auth("scraper") | key
    )
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]
    wait(client, first["id"])
    listed = client.get("/v1/jobs", headers=auth("scraper")).json()["jobs"]
    assert [j["id"] for j in listed] == [first["id"]]


@pytest.mark.parametrize(
    ("images", "webhook", "status", "words"),
    [
        (0, None, 422, "at least one image"),
        (11, None, 413, "at most 10"),
        (1, "ftp://hooks.example/x", 422, "bad_url"),
        (1, "not a url", 422, "bad_url"),
        (1, "http://127.0.0.1:9/hook", 422, "blocked_address"),
        (1, "http://10.1.2.3/hook", 422, "blocked_address"),
        (1, "http://[::1]/hook", 422, "blocked_address"),
    ],
)
def test_bad_input_is_refused_with_a_clear_4xx(
    make_client: MakeClient, images: int, webhook: str | None, status: int, words: str
) -> None:
    client = make_client(allow_private_addresses=False)  # the webhook guard as in production
    body: dict[str, Any] = {
        "advertiser": "a",
        "images": [{"url": f"https://cdn.example/{i}.jpg"} for i in range(images)],
    }
    if webhook:
        body["webhook_url"] = webhook
    res = client.post("/v1/jobs", json=body, headers=auth("a"))
    assert res.status_code == status, res.text
    assert words in res.json()["detail"]
    assert client.get("/v1/jobs", headers=auth("staff")).json()["jobs"] == []


def test_webhooks_need_a_secret(make_client: MakeClient) -> None:
    client = make_client(webhook_secret=None)
    body = {"advertiser": "a", "images": [{"url": "https://cdn.example/1.jpg"}], "webhook_url": "http://127.0.0.1/h"}
    res = client.post("/v1/jobs", json=body, headers=auth("a"))
    assert res.status_code == 422
    assert "LOTLENS_WEBHOOK_SECRET" in res.json()["detail"]


def test_advertiser_keys_see_only_their_own_jobs(client: TestClient, server: str) -> None:
    mine = submit(client, "a", "a", [f"{server}/img/iso.jpg?name=car"])
    by_scraper = submit(client, "scraper", "b", [f"{server}/img/iso.jpg?name=car"])
    wait(client, mine["id"])
    wait(client, by_scraper["id"])
    job = f"/v1/jobs/{mine['id']}"
    for path in (job, f"{job}/results"):
        assert client.get(path, headers=auth("b")).status_code == 404
        assert client.get(path, headers=auth("scraper")).status_code == 404  # a scraper sees what it submitted
        assert client.get(path, headers=auth("a")).status_code == 200
        assert client.get(path, headers=auth("staff")).status_code == 200
    assert client.get(f"{job}/results", headers=auth("b") | {"Accept": "application/x-ndjson"}).status_code == 404
    assert client.delete(job, headers=auth("b")).status_code == 404
    assert client.get(job).status_code == 401
    assert client.get("/v1/jobs?advertiser=a", headers=auth("b")).status_code == 403
    assert [j["id"] for j in client.get("/v1/jobs", headers=auth("b")).json()["jobs"]] == [by_scraper["id"]]
    assert [j["id"] for j in client.get("/v1/jobs", headers=auth("a")).json()["jobs"]] == [mine["id"]]
    assert [j["id"] for j in client.get("/v1/jobs", headers=auth("scraper")).json()["jobs"]] == [by_scraper["id"]]
    assert client.get("/v1/jobs", headers=auth("scraper2")).json()["jobs"] == []
    staff = client.get("/v1/jobs?limit=1", headers=auth("staff")).json()
    assert [j["id"] for j in staff["jobs"]] == [by_scraper["id"]]
    older = client.get(f"/v1/jobs?limit=1&cursor={staff['next_cursor']}", headers=auth("staff")).json()
    assert ([j["id"] for j in older["jobs"]], older["next_cursor"]) == ([mine["id"]], None)
    assert [j["id"] for j in client.get("/v1/jobs?advertiser=a", headers=auth("staff")).json()["jobs"]] == [mine["id"]]
    body = {"advertiser": "a", "images": [{"url": f"{server}/car.jpg"}]}
    assert client.post("/v1/jobs", json=body, headers=auth("b")).status_code == 403
    assert client.get("/v1/jobs/nope", headers=auth("staff")).status_code == 404


def test_cancel_means_chunks_not_started_never_run(make_client: MakeClient) -> None:
    client = make_client(job_chunk=1)
    with image_host() as host, receiver() as hook:
        urls = [f"{host.url}/gate.jpg", f"{host.url}/never-1.jpg", f"{host.url}/never-2.jpg"]
        job = submit(client, "a", "a", urls, webhook_url=f"{hook.url}/in")
        assert host.entered.wait(WAIT)  # the first chunk is downloading
        res = client.delete(f"/v1/jobs/{job['id']}", headers=auth("a"))
        assert res.status_code == 200
        assert res.json()["status"] == "cancelled"
        assert client.delete(f"/v1/jobs/{job['id']}", headers=auth("a")).status_code == 200  # idempotent
        host.gate.set()
        done = wait(client, job["id"])
        assert hook.accepted.wait(WAIT)
    assert (done["status"], done["processed"]) == ("cancelled", 1)
    results = client.get(f"/v1/jobs/{job['id']}/results", headers=auth("a")).json()
    assert results["next_cursor"] is None
    assert [(r["status"], r["reason"]) for r in results["results"]] == [
        ("ok", None),
        ("skipped", "cancelled"),
        ("skipped", "cancelled"),
    ]
    assert [c.headers["webhook-id"] for c in hook.calls] == [f"msg_{job['id']}"]
    assert json.loads(hook.calls[0].body)["data"]["status"] == "cancelled"
    assert not any("never" in k for k in HITS)


def test_done_job_cannot_be_cancelled(client: TestClient, server: str) -> None:
    job = submit(client, "a", "a", [f"{server}/img/c.jpg?name=car"])
    wait(client, job["id"])
    res = client.delete(f"/v1/jobs/{job['id']}", headers=auth("a"))
    assert res.status_code == 409
    assert "already done" in res.json()["detail"]


def test_signed_webhook_retried_until_accepted_under_one_id(client: TestClient, server: str) -> None:
    with receiver(fail=2) as hook:
        job = submit(client, "scraper", "a", [f"{server}/img/w.jpg?name=car"], webhook_url=f"{hook.url}/hooks/lotlens")
        wait(client, job["id"])
        assert hook.accepted.wait(WAIT)
    assert len(hook.calls) == 3
    assert {c.headers["webhook-id"] for c in hook.calls} == {f"msg_{job['id']}"}
    assert all(c.signature_ok for c in hook.calls)
    body = json.loads(hook.calls[-1].body)
    assert (body["type"], body["data"]["id"], body["data"]["status"], body["data"]["ok"]) == (
        "job.finished",
        job["id"],
        "done",
        1,
    )
    assert body["timestamp"]
    assert abs(int(hook.calls[-1].headers["webhook-timestamp"]) - int(hook.calls[0].headers["webhook-timestamp"])) < 60
    status = client.get(f"/v1/jobs/{job['id']}", headers=auth("scraper")).json()["webhook"]
    assert (status["status"], status["attempts"], status["last"]["status_code"]) == ("delivered", 3, 204)


def test_a_broker_that_cannot_be_reached_fails_the_job_not_the_request(make_client: MakeClient) -> None:
    client = make_client(broker_url="amqp://guest:guest@127.0.0.1:1//")  # nothing listens on port 1
    job = submit(client, "a", "a", ["https://cdn.example/1.jpg"])
    assert job["status"] == "failed"
    assert "broker could not be reached" in job["error"]


def test_jobs_a_stopped_server_left_are_taken_up_when_it_starts(
    tmp_path: Path, make_client: MakeClient, server: str
) -> None:
    from lotlens.store.jobs import JobInput, JobStore

    left = JobStore(Store.from_url(f"sqlite:///{(tmp_path / 'lotlens.db').resolve()}"))
    job, _ = left.create("a", "scraper-1", [JobInput(f"{server}/img/left{i}.jpg?name=car") for i in range(3)], 2)
    running = left.start_chunk(job.id, 0, 3).work  # its server stopped in the middle of this chunk
    assert running is not None
    client = make_client()
    done = wait(client, job.id)
    assert (done["status"], done["processed"], done["ok"]) == ("done", 3, 3)
