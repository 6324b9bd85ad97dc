"""Jobs on real Celery workers: PostgreSQL, RabbitMQ (and Redis), `lotlens worker` processes started
here, a worker killed with SIGKILL mid-chunk, a webhook receiver that checks signatures, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from receivers import SECRET, broker, image_host, receiver
from sqlalchemy import select
from typer.testing import CliRunner

from lotlens.api import create_app
from lotlens.cli import app as cli
from lotlens.config import ApiKey, Settings
from lotlens.store import Store
from lotlens.store.tables import JobChunk
from lotlens.vision import Pipeline

from httpserver import serve_app

pytestmark = [pytest.mark.slow, pytest.mark.integration]

KEY = ApiKey(name="scraper-1", key="s" * 32, role="scraper")
AUTH = {"Authorization": f"Bearer {KEY.key}"}
WAIT = 240.0  # seconds: model loading in each worker process, on two shared cores


def _env(tmp_path: Path, db: str, broker_url: str, queue: str) -> dict[str, str]:
    return {
        "LOTLENS_DATA_DIR": str(tmp_path / "data"),
        "LOTLENS_DATABASE_URL": db,
        "LOTLENS_BROKER_URL": broker_url,
        "LOTLENS_JOB_QUEUE": queue,
        "LOTLENS_JOB_CHUNK": "5",
        "LOTLENS_ALLOW_PRIVATE_ADDRESSES": "true",
        "LOTLENS_THREADS": "1",
        "LOTLENS_FETCH_RETRIES": "0",
        "LOTLENS_VERIFY_FRACTION": "0",
        "LOTLENS_WEBHOOK_SECRET": SECRET,
        "LOTLENS_WEBHOOK_BACKOFF": "0.2",
        "LOTLENS_API_KEYS": json.dumps([KEY.model_dump()]),
    }


class Workers:
    """`lotlens worker --concurrency 1` processes, each in its own process group (killed whole)."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = os.environ | env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        with (self.tmp_path / f"worker-{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "lotlens"), "worker", "--concurrency", "1", "--loglevel", "info"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)

    def logs(self) -> str:
        return "\n".join(f.read_text()[-3000:] for f in sorted(self.tmp_path.glob("worker-*.log")))


@contextmanager
def fleet(tmp_path: Path, pg_url: str, broker_url: str, pipeline: Pipeline) -> Iterator[tuple[str, Workers, Store]]:
    """A server (uvicorn, in this process) publishing to `broker_url`, and a worker launcher."""
    env = _env(tmp_path, pg_url, broker_url, f"lotlens-test-{uuid.uuid4().hex[:8]}")
    with mock.patch.dict(os.environ, env):
        settings = Settings()  # what `lotlens serve` would read from the same environment
    store = Store.from_url(pg_url)  # migrated before any worker starts
    workers = Workers(tmp_path, env)
    try:
        for url in serve_app(create_app(settings, store, pipeline)):
            yield url, workers, store
    except BaseException:
        sys.stderr.write(workers.logs())
        raise
    finally:
        workers.stop()
        store.engine.dispose()
        from kombu import Connection

        with Connection(broker_url) as conn, conn.channel() as channel:
            channel.queue_delete(env["LOTLENS_JOB_QUEUE"])


def _wait_status(api: str, job_id: str, *, until: tuple[str, ...] = ("done", "failed", "cancelled")) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{api}/v1/jobs/{job_id}", headers=AUTH).json()
        if job["status"] in until:
            return job
        time.sleep(0.2)  # polling the API as a client does; the job's end is the condition
    raise AssertionError(f"job {job_id} still {job['status']} after {WAIT}s")


def _all_results(api: str, job_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = httpx.get(f"{api}/v1/jobs/{job_id}/results", params={"cursor": cursor, "limit": 7}, headers=AUTH).json()
        rows += page["results"]
        cursor = page["next_cursor"]
    return rows


def test_a_worker_killed_mid_chunk_loses_and_duplicates_nothing(
    tmp_path: Path, pg_url: str, pipeline: Pipeline, server: str
) -> None:
    with (
        fleet(tmp_path, pg_url, broker("amqp"), pipeline) as (api, workers, store),
        image_host() as host,
        receiver(fail=1) as hook,
    ):
        first = workers.start()
        urls = [f"{host.url}/gate.jpg"] + [f"{server}/img/k{i}.jpg?name=car&salt=k{i}" for i in range(13)]
        urls += [f"{server}/missing.jpg", f"{server}/html.jpg"]
        body = {"advertiser": "a", "images": [{"url": u} for u in urls], "webhook_url": f"{hook.url}/in"}
        res = httpx.post(f"{api}/v1/jobs", json=body, headers=AUTH)
        assert res.status_code == 202, res.text
        job_id = res.json()["id"]
        assert host.entered.wait(WAIT), workers.logs()  # the first worker is inside chunk 0
        workers.start()
        workers.kill(first)  # its whole process group, mid-chunk
        host.gate.set()
        job = _wait_status(api, job_id)
        assert hook.accepted.wait(WAIT)
        results = _all_results(api, job_id)
        with store.engine.connect() as conn:
            attempts = dict(
                conn.execute(select(JobChunk.seq, JobChunk.attempts).where(JobChunk.job_id == job_id)).all()
            )

    assert (job["status"], job["total"], job["processed"], job["ok"], job["skipped"]) == ("done", 16, 16, 14, 2)
    assert [r["url"] for r in results] == urls  # every URL once, in input order
    assert [r["status"] for r in results] == ["ok"] * 14 + ["skipped"] * 2
    assert [r["reason"] for r in results[-2:]] == ["http_404", "not_an_image"]
    assert len({r["image_key"] for r in results[1:14]}) == 13  # salted copies: each classified on its own
    assert attempts[0] == 2  # chunk 0 was redone by the other worker
    assert {c.headers["webhook-id"] for c in hook.calls} == {f"msg_{job_id}"}
    assert len(hook.calls) == 2
    assert all(c.signature_ok for c in hook.calls)
    delivered = json.loads(hook.calls[-1].body)["data"]
    assert (delivered["status"], delivered["processed"]) == ("done", 16)


@pytest.mark.parametrize("kind", ["amqp", "redis"])
def test_cli_submits_waits_and_reads_a_job_run_by_a_worker(
    tmp_path: Path, pg_url: str, pipeline: Pipeline, server: str, kind: str
) -> None:
    urls = [f"{server}/img/cli{i}.jpg?name=blue&salt={kind}{i}" for i in range(6)] + [f"{server}/missing.jpg"]
    with fleet(tmp_path, pg_url, broker(kind), pipeline) as (api, workers, _):
        workers.start()
        env = {"LOTLENS_API_URL": api, "LOTLENS_API_KEY": KEY.key}
        runner = CliRunner()
        res = runner.invoke(
            cli,
            ["jobs", "submit", "--advertiser", "a", "--from-file", "-", "--wait", "--json"],
            "\n".join(urls),
            env=env,
        )
        assert res.exit_code == 0, res.output
        job = json.loads(res.stdout)
        assert (job["status"], job["processed"], job["ok"], job["skipped"]) == ("done", 7, 6, 1)
        res = runner.invoke(cli, ["jobs", "results", job["id"], "--json"], env=env)
        assert res.exit_code == 0, res.output
        assert [r["url"] for r in json.loads(res.stdout)] == urls
        res = runner.invoke(cli, ["jobs", "status", job["id"]], env=env)
        assert "done, 7/7 processed, 6 ok, 1 skipped" in res.stdout
        res = runner.invoke(cli, ["jobs", "cancel", job["id"]], env=env)
        assert res.exit_code == 2
        assert "already done" in res.output
