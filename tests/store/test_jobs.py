"""Job state in the store, on SQLite and PostgreSQL: chunks, idempotent completion, cancel, slots."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from lotlens.store import Store
from lotlens.store.jobs import JobInput, JobStore
from lotlens.store.tables import Job


def _job(jobs: JobStore, n: int = 5, chunk: int = 2, **kw: object) -> str:
    job, created = jobs.create("adv", "scraper-1", [JobInput(f"https://cdn.x/{i}.jpg") for i in range(n)], chunk, **kw)  # type: ignore[arg-type]
    assert created
    return job.id


def _answers(work_items: list[JobInput], status: str = "ok") -> list[dict[str, object]]:
    return [{"url": it.url, "status": status} for it in work_items]


def test_a_job_is_cut_into_chunks_and_finishes_once_every_chunk_is_done(store: Store) -> None:
    jobs = JobStore(store)
    job_id = _job(jobs, n=5, chunk=2)
    job = jobs.get(job_id)
    assert job is not None
    assert (job.status, job.total, job.chunks, job.processed) == ("queued", 5, 3, 0)
    assert jobs.pending_chunks(job_id) == [0, 1, 2]

    ended = None
    for seq in (2, 0, 1):  # chunks may finish in any order; answers still page in input order
        work = jobs.start_chunk(job_id, seq, max_attempts=3).work
        assert work is not None
        assert jobs.get(job_id).status == "running"  # type: ignore[union-attr]
        ended = jobs.finish_chunk(job_id, seq, _answers(work.items, "skipped" if seq == 2 else "ok"))
        assert (ended is None) == (seq != 1)
    assert ended is not None
    assert (ended.status, ended.processed, ended.ok, ended.skipped) == ("done", 5, 4, 1)
    assert ended.finished_at is not None
    rows = jobs.items(job_id, 0, 10)
    assert [i for i, _, _ in rows] == [0, 1, 2, 3, 4]
    assert [r["url"] for _, _, r in rows if r] == [f"https://cdn.x/{i}.jpg" for i in range(5)]


def test_a_redone_chunk_neither_duplicates_nor_recounts(store: Store) -> None:
    jobs = JobStore(store)
    job_id = _job(jobs, n=2, chunk=2)
    first = jobs.start_chunk(job_id, 0, max_attempts=3).work
    again = jobs.start_chunk(job_id, 0, max_attempts=3).work  # its first worker died: another takes it up
    assert first is not None
    assert again is not None
    assert (first.attempt, again.attempt) == (1, 2)
    assert jobs.finish_chunk(job_id, 0, _answers(again.items)) is not None
    assert jobs.finish_chunk(job_id, 0, _answers(first.items, "skipped")) is None  # the late one changes nothing
    job = jobs.get(job_id)
    assert job is not None
    assert (job.status, job.processed, job.ok, job.skipped) == ("done", 2, 2, 0)
    assert len(jobs.items(job_id, 0, 100)) == 2
    assert jobs.start_chunk(job_id, 0, max_attempts=3).work is None  # done chunks never run again


def test_a_chunk_that_keeps_killing_workers_fails_the_job(store: Store) -> None:
    jobs = JobStore(store)
    job_id = _job(jobs, n=4, chunk=2)
    for _ in range(2):
        assert jobs.start_chunk(job_id, 1, max_attempts=2).work is not None
    started = jobs.start_chunk(job_id, 1, max_attempts=2)
    assert started.work is None
    assert started.ended is not None
    assert started.ended.status == "failed"
    assert "chunk 1" in (started.ended.error or "")
    assert jobs.start_chunk(job_id, 0, max_attempts=2).work is None


def test_cancel_stops_chunks_not_started(store: Store) -> None:
    jobs = JobStore(store)
    job_id = _job(jobs, n=6, chunk=2)
    running = jobs.start_chunk(job_id, 0, max_attempts=3).work
    assert running is not None
    cancelled = jobs.cancel(job_id)
    assert cancelled is not None
    assert cancelled.status == "cancelled"
    assert jobs.cancel(job_id) is None  # once
    assert jobs.start_chunk(job_id, 1, max_attempts=3).work is None
    assert jobs.finish_chunk(job_id, 0, _answers(running.items)) is None  # the running chunk lands, status stays
    job = jobs.get(job_id)
    assert job is not None
    assert (job.status, job.processed) == ("cancelled", 2)
    assert jobs.pending_chunks(job_id) == []
    assert jobs.unfinished() == []


def test_idempotency_key_returns_the_first_job_for_a_day(store: Store) -> None:
    jobs = JobStore(store)
    items = [JobInput("https://cdn.x/1.jpg")]
    a, created_a = jobs.create("adv", "k1", items, 250, idempotency_key="abc", request_hash="h1")
    b, created_b = jobs.create("adv", "k1", items, 250, idempotency_key="abc", request_hash="h2")
    c, created_c = jobs.create("adv", "k2", items, 250, idempotency_key="abc")  # another key's namespace
    assert (created_a, created_b, created_c) == (True, False, True)
    assert b.id == a.id
    assert b.request_hash == "h1"  # the caller compares it with its own body
    assert c.id != a.id
    with store.engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == a.id).values(created_at=a.created_at - timedelta(hours=25)))
    d, created_d = jobs.create("adv", "k1", items, 250, idempotency_key="abc")
    assert created_d
    assert d.id != a.id


def test_search_pages_newest_first_with_filters(store: Store) -> None:
    jobs = JobStore(store)
    ids = [_job(jobs, n=1) for _ in range(3)]
    other, _ = jobs.create("other", "k", [JobInput("https://cdn.x/1.jpg")], 250)
    assert [j.id for j in jobs.search(advertiser="adv", limit=2)] == ids[::-1][:2]
    assert [j.id for j in jobs.search(advertiser="adv", before=ids[1])] == [ids[0]]
    assert [j.id for j in jobs.search(owner="k")] == [other.id]
    jobs.cancel(ids[0])
    assert [j.id for j in jobs.search(status="cancelled")] == [ids[0]]


def test_webhook_tries_are_recorded_once_each(store: Store) -> None:
    jobs = JobStore(store)
    job_id = _job(jobs, n=1, webhook_url="https://hooks.x/in")
    job = jobs.get(job_id)
    assert job is not None
    assert (job.webhook_status, job.webhook_id) == ("pending", f"msg_{job_id}")
    assert jobs.webhooks_due() == []  # not over yet
    jobs.cancel(job_id)
    assert jobs.webhooks_due() == [job_id]
    assert jobs.record_webhook(job_id, 1, {"status_code": 500}, delivered=False, last=False)
    assert not jobs.record_webhook(job_id, 1, {"status_code": 500}, delivered=False, last=False)  # a duplicate try
    assert jobs.record_webhook(job_id, 2, {"status_code": 204}, delivered=True, last=False)
    job = jobs.get(job_id)
    assert job is not None
    assert (job.webhook_status, job.webhook_attempts, job.webhook_last) == ("delivered", 2, {"status_code": 204})
    assert jobs.webhooks_due() == []


def test_download_slots_are_bounded_and_expire(store: Store) -> None:
    jobs = JobStore(store)
    assert jobs.acquire_slot("cdn.x", 2, "w1", 60)
    assert jobs.acquire_slot("cdn.x", 2, "w2", 60)
    assert not jobs.acquire_slot("cdn.x", 2, "w3", 60)
    assert jobs.acquire_slot("cdn.y", 2, "w3", 60)  # per host
    jobs.release_slot("cdn.x", "w1")
    assert jobs.acquire_slot("cdn.x", 2, "w3", 60)
    assert jobs.slots_held("cdn.x") == 2
    assert jobs.acquire_slot("cdn.z", 1, "dead", -1)  # a holder whose lease ran out
    assert jobs.acquire_slot("cdn.z", 1, "w4", 60)
