"""Job, chunk and per-index result state, and fleet-wide download slots: what `lotlens.jobs` runs on.

A job's inputs and answers are rows keyed by input index, so results page in input order and a
chunk redone after a lost worker overwrites its own rows, never adds any. Starting and finishing a
chunk are each one transaction whose first statement is a guarded UPDATE of the chunk row, so the
job's counters move once per chunk whichever worker finishes it, and a cancelled job's waiting
chunks never start.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from lotlens.store.repository import Store, now
from lotlens.store.tables import HostLease, Job, JobChunk, JobItem

STATUSES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL = ("done", "failed", "cancelled")
IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class JobInput:
    """One image of a job, as the caller sent it."""

    url: str
    vehicle_id: str | None = None
    color: str | None = None


@dataclass(frozen=True)
class JobRecord:
    id: str
    advertiser: str
    owner: str
    status: str
    total: int
    processed: int
    ok: int
    skipped: int
    chunks: int
    chunks_done: int
    error: str | None
    request_hash: str | None
    webhook_url: str | None
    webhook_id: str | None
    webhook_status: str | None
    webhook_attempts: int
    webhook_last: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class ChunkWork:
    """A chunk a worker may run now: its items, and which try of it this is."""

    job_id: str
    seq: int
    advertiser: str
    start: int
    items: list[JobInput]
    attempt: int


@dataclass(frozen=True)
class Started:
    """What `start_chunk` decided: work to do, or nothing (and the job, if this call ended it)."""

    work: ChunkWork | None = None
    ended: JobRecord | None = None


def _record(j: Job) -> JobRecord:
    return JobRecord(
        j.id,
        j.advertiser,
        j.owner,
        j.status,
        j.total,
        j.processed,
        j.ok,
        j.skipped,
        j.chunks,
        j.chunks_done,
        j.error,
        j.request_hash,
        j.webhook_url,
        j.webhook_id,
        j.webhook_status,
        j.webhook_attempts,
        dict(j.webhook_last) if j.webhook_last else None,
        j.created_at,
        j.started_at,
        j.finished_at,
    )


def _count(result: object) -> int:
    """Rows an UPDATE, DELETE or INSERT matched: what every guarded transition here decides on."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def new_job_id() -> str:
    """32 hex digits that sort by creation time (milliseconds first), so listings page by id."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


class JobStore:
    """Data access for jobs. Thread-safe like `Store`: every method is its own transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._session = store._session

    # -- jobs ------------------------------------------------------------------------------------

    def create(
        self,
        advertiser: str,
        owner: str,
        items: Sequence[JobInput],
        chunk_size: int,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """A new queued job cut into chunks of `chunk_size`; with an idempotency key already used by
        `owner` in the last 24 h, the job made then instead. Returns (job, created)."""
        if idempotency_key:
            existing = self._by_key(owner, idempotency_key)
            if existing is not None:
                return existing, False
        job_id = new_job_id()
        bounds = [(s, min(s + chunk_size, len(items))) for s in range(0, len(items), chunk_size)]
        t = now()
        try:
            with self._session.begin() as s:
                s.add(
                    Job(
                        id=job_id,
                        advertiser=advertiser,
                        owner=owner,
                        status="queued",
                        total=len(items),
                        processed=0,
                        ok=0,
                        skipped=0,
                        chunks=len(bounds),
                        chunks_done=0,
                        idempotency_key=idempotency_key or None,
                        request_hash=request_hash,
                        webhook_url=webhook_url,
                        webhook_id=f"msg_{job_id}" if webhook_url else None,
                        webhook_status="pending" if webhook_url else None,
                        webhook_attempts=0,
                        created_at=t,
                    )
                )
                s.flush()
                s.execute(
                    insert(JobItem),
                    [
                        {"job_id": job_id, "idx": i, "url": it.url, "vehicle_id": it.vehicle_id, "color": it.color}
                        for i, it in enumerate(items)
                    ],
                )
                s.execute(
                    insert(JobChunk),
                    [
                        {"job_id": job_id, "seq": n, "start": a, "stop": b, "status": "pending", "attempts": 0}
                        for n, (a, b) in enumerate(bounds)
                    ],
                )
        except IntegrityError:
            if idempotency_key:  # the same key raced in from another request: that job is the answer
                existing = self._by_key(owner, idempotency_key)
                if existing is not None:
                    return existing, False
            raise
        job = self.get(job_id)
        assert job is not None
        return job, True

    def _by_key(self, owner: str, key: str) -> JobRecord | None:
        """The job `owner` made with `key` within the window; an older one gives its key up."""
        with self._session.begin() as s:
            j = s.scalars(select(Job).where(Job.owner == owner, Job.idempotency_key == key)).first()
            if j is None:
                return None
            created = j.created_at if j.created_at.tzinfo else j.created_at.replace(tzinfo=now().tzinfo)
            if now() - created < IDEMPOTENCY_WINDOW:
                return _record(j)
            j.idempotency_key = None
            return None

    def get(self, job_id: str) -> JobRecord | None:
        with self._session() as s:
            j = s.get(Job, job_id)
            return _record(j) if j is not None else None

    def search(
        self,
        advertiser: str | None = None,
        owner: str | None = None,
        status: str | None = None,
        before: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs newest first; `before` is the id the previous page ended on."""
        q = select(Job).order_by(Job.id.desc()).limit(limit)
        if advertiser is not None:
            q = q.where(Job.advertiser == advertiser)
        if owner is not None:
            q = q.where(Job.owner == owner)
        if status is not None:
            q = q.where(Job.status == status)
        if before is not None:
            q = q.where(Job.id < before)
        with self._session() as s:
            return [_record(j) for j in s.scalars(q)]

    def unfinished(self) -> list[str]:
        """Queued and running jobs, oldest first (an embedded runner picks them up after a restart)."""
        with self._session() as s:
            return list(s.scalars(select(Job.id).where(Job.status.in_(("queued", "running"))).order_by(Job.id)))

    def pending_chunks(self, job_id: str) -> list[int]:
        """Chunks of the job not done yet, in order (running ones too: their worker may be gone)."""
        with self._session() as s:
            return list(
                s.scalars(
                    select(JobChunk.seq)
                    .where(JobChunk.job_id == job_id, JobChunk.status.in_(("pending", "running")))
                    .order_by(JobChunk.seq)
                )
            )

    def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued or running job: its chunks not started never run. The job when this call
        cancelled it, else None (unknown or already over)."""
        with self._session.begin() as s:
            n = _count(
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status.in_(("queued", "running")))
                    .values(status="cancelled", finished_at=now())
                )
            )
            if not n:
                return None
            s.execute(
                update(JobChunk)
                .where(JobChunk.job_id == job_id, JobChunk.status == "pending")
                .values(status="cancelled")
            )
        return self.get(job_id)

    def fail(self, job_id: str, error: str) -> JobRecord | None:
        """Mark a queued or running job failed; the job when this call ended it."""
        with self._session.begin() as s:
            n = _count(
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status.in_(("queued", "running")))
                    .values(status="failed", error=error[:2000], finished_at=now())
                )
            )
            if n:
                s.execute(
                    update(JobChunk)
                    .where(JobChunk.job_id == job_id, JobChunk.status == "pending")
                    .values(status="cancelled")
                )
        return self.get(job_id) if n else None

    # -- chunks ----------------------------------------------------------------------------------

    def start_chunk(self, job_id: str, seq: int, max_attempts: int) -> Started:
        """Claim a chunk to run. A chunk already done, or of a job that is over, gives no work; a
        chunk tried `max_attempts` times already (it keeps killing its workers) fails the job."""
        t = now()
        with self._session.begin() as s:
            n = _count(
                s.execute(
                    update(JobChunk)
                    .where(JobChunk.job_id == job_id, JobChunk.seq == seq, JobChunk.status.in_(("pending", "running")))
                    .values(status="running", attempts=JobChunk.attempts + 1, started_at=t)
                )
            )
            if not n:
                return Started()
            chunk = s.get(JobChunk, (job_id, seq))
            job = s.get(Job, job_id)
            assert chunk is not None
            assert job is not None
            if job.status in TERMINAL:
                chunk.status = "cancelled"
                return Started()
            if chunk.attempts > max_attempts:
                chunk.status = "failed"
                job.status, job.finished_at = "failed", t
                job.error = f"chunk {seq} (items {chunk.start}..{chunk.stop - 1}) failed {max_attempts} times"
                s.flush()
                return Started(ended=_record(job))
            if job.status == "queued":
                job.status, job.started_at = "running", t
            rows = s.scalars(
                select(JobItem)
                .where(JobItem.job_id == job_id, JobItem.idx >= chunk.start, JobItem.idx < chunk.stop)
                .order_by(JobItem.idx)
            ).all()
            items = [JobInput(r.url, r.vehicle_id, r.color) for r in rows]
            return Started(ChunkWork(job_id, seq, job.advertiser, chunk.start, items, chunk.attempts))

    def finish_chunk(self, job_id: str, seq: int, results: Sequence[dict[str, Any]]) -> JobRecord | None:
        """Store a chunk's answers (one per item, in order) and move the counters, once: a chunk
        already finished by another worker changes nothing. The job when this call ended it."""
        t = now()
        with self._session.begin() as s:
            n = _count(
                s.execute(
                    update(JobChunk)
                    .where(JobChunk.job_id == job_id, JobChunk.seq == seq, JobChunk.status.in_(("pending", "running")))
                    .values(status="done", finished_at=t)
                )
            )
            if not n:
                return None
            chunk = s.get(JobChunk, (job_id, seq))
            assert chunk is not None
            assert len(results) == chunk.stop - chunk.start, "one answer per item of the chunk"
            s.execute(
                update(JobItem),
                [{"job_id": job_id, "idx": chunk.start + i, "result": r} for i, r in enumerate(results)],
            )
            ok = sum(1 for r in results if r.get("status") == "ok")
            s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    processed=Job.processed + len(results),
                    ok=Job.ok + ok,
                    skipped=Job.skipped + (len(results) - ok),
                    chunks_done=Job.chunks_done + 1,
                )
            )
            ended = _count(
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status.in_(("queued", "running")), Job.chunks_done >= Job.chunks)
                    .values(status="done", finished_at=t)
                )
            )
        return self.get(job_id) if ended else None

    def items(self, job_id: str, start: int, limit: int) -> list[tuple[int, str, dict[str, Any] | None]]:
        """(index, url, answer or None while its chunk has not finished) from `start`, in order."""
        with self._session() as s:
            rows = s.execute(
                select(JobItem.idx, JobItem.url, JobItem.result)
                .where(JobItem.job_id == job_id, JobItem.idx >= start)
                .order_by(JobItem.idx)
                .limit(limit)
            ).all()
        return [(int(i), str(u), dict(r) if r is not None else None) for i, u, r in rows]

    # -- webhooks --------------------------------------------------------------------------------

    def webhooks_due(self) -> list[str]:
        """Jobs that are over and whose webhook has not been delivered or given up on."""
        with self._session() as s:
            return list(
                s.scalars(
                    select(Job.id).where(Job.status.in_(TERMINAL), Job.webhook_status == "pending").order_by(Job.id)
                )
            )

    def record_webhook(self, job_id: str, attempt: int, answer: dict[str, Any], delivered: bool, last: bool) -> bool:
        """Record try number `attempt` (1-based) and its answer; False when that try was already
        recorded (a duplicate delivery task), so the caller schedules nothing more."""
        status = "delivered" if delivered else ("failed" if last else "pending")
        with self._session.begin() as s:
            n = _count(
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.webhook_status == "pending", Job.webhook_attempts == attempt - 1)
                    .values(webhook_attempts=attempt, webhook_last=answer, webhook_status=status)
                )
            )
        return bool(n)

    # -- download slots shared by the fleet ------------------------------------------------------

    def acquire_slot(self, host: str, limit: int, holder: str, lease_seconds: float) -> bool:
        """Take one of `limit` download slots on `host` for `holder`, if one is free. A slot whose
        lease ran out (its worker died holding it) is free again."""
        t = now()
        with self._session.begin() as s:
            s.execute(delete(HostLease).where(HostLease.host == host, HostLease.expires_at < t))
            taken = set(s.scalars(select(HostLease.slot).where(HostLease.host == host)))
            for slot in (i for i in range(limit) if i not in taken):
                got = _count(
                    s.execute(
                        self._store._insert(HostLease)
                        .values(host=host, slot=slot, holder=holder, expires_at=t + timedelta(seconds=lease_seconds))
                        .on_conflict_do_nothing()
                    )
                )
                if got:
                    return True
        return False

    def release_slot(self, host: str, holder: str) -> None:
        with self._session.begin() as s:
            s.execute(delete(HostLease).where(HostLease.host == host, HostLease.holder == holder))

    def slots_held(self, host: str) -> int:
        with self._session() as s:
            return len(
                list(s.scalars(select(HostLease.slot).where(HostLease.host == host, HostLease.expires_at >= now())))
            )
