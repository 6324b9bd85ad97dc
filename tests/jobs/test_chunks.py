"""Chunks of one process share its event loop: one HTTP client (kept-alive connections) and one
batcher queue, in a worker (the runner's own loop) and inside the server (the server's loop)."""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi.testclient import TestClient

from lotlens.api import create_app
from lotlens.config import ApiKey, Settings
from lotlens.jobs import ChunkRunner
from lotlens.service import Service
from lotlens.store import Store
from lotlens.store.jobs import JobInput, JobStore

from fakes import FakePipeline
from httpserver import PEERS

STAFF = ApiKey(name="ana (staff)", key="t" * 32, role="staff")


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path, allow_private_addresses=True, fetch_retries=0, verify_fraction=0.0, api_keys=[STAFF]
    )


def _ports(path: str) -> list[int]:
    return [port for p, port in PEERS if p == path]


def test_a_workers_chunks_reuse_one_client_and_its_connection(tmp_path: Path, server: str) -> None:
    settings = _settings(tmp_path)
    store = Store.from_url(settings.resolved_database_url())
    jobs = JobStore(store)
    runner = ChunkRunner(settings, jobs, Service(settings, store, lambda: FakePipeline()))
    path = "/img/chunks-worker.jpg"
    # One image a chunk, each under its own ETag: every chunk downloads and classifies.
    urls = [f"{server}{path}?name=blue&etag=%22w{i}%22&v={i}" for i in range(3)]
    job, _ = jobs.create("adv", "k-worker", [JobInput(u) for u in urls], 1)
    seen = len(_ports(path))
    try:
        for seq in range(3):  # each chunk from a thread of its own, as Celery's or serve's pool calls it
            t = threading.Thread(target=runner.run, args=(job.id, seq))
            t.start()
            t.join()
    finally:
        runner.close()
        store.engine.dispose()
    ended = jobs.get(job.id)
    assert ended is not None
    assert (ended.status, ended.ok) == ("done", 3)
    ports = _ports(path)[seen:]
    assert len(ports) == 3
    assert len(set(ports)) == 1, ports  # one kept-alive connection for the three chunks


def test_served_jobs_run_through_the_servers_service_and_client(tmp_path: Path, server: str) -> None:
    settings = _settings(tmp_path).model_copy(update={"job_chunk": 1})
    store = Store.from_url(settings.resolved_database_url())
    path = "/img/chunks-served.jpg"
    headers = {"Authorization": f"Bearer {STAFF.key}"}
    with TestClient(create_app(settings, store, FakePipeline())) as client:
        state = client.app.state  # type: ignore[attr-defined]
        assert state.jobs.chunks.service is state.lotlens.service
        seen = len(_ports(path))
        res = client.post(
            "/v1/classify",
            json={"advertiser": "adv", "images": [{"url": f"{server}{path}?name=car&etag=%22s0%22"}]},
            headers=headers,
        )
        assert res.status_code == 200, res.text
        assert res.json()["results"][0]["status"] == "ok"
        urls = [f"{server}{path}?name={name}&etag=%22s{name}%22" for name in ("blue", "yellow")]
        res = client.post("/v1/jobs", json={"advertiser": "adv", "images": [{"url": u} for u in urls]}, headers=headers)
        assert res.status_code == 202, res.text
        job_id = res.json()["id"]
        assert state.jobs.wait(job_id, 60)
        assert client.get(f"/v1/jobs/{job_id}", headers=headers).json()["ok"] == 2
        ports = _ports(path)[seen:]
    assert len(ports) == 3
    assert len(set(ports)) == 1, ports  # the request's connection, kept alive for the job's two chunks
    store.engine.dispose()
