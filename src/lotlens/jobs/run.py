"""One chunk end to end (claim -> classify through the service -> store the answers), and the
job status and result pages every edge (API, CLI, webhooks) shows."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

from lotlens.config import Settings
from lotlens.service import Item, Service
from lotlens.store.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# What an answer that never came says, by how its job ended.
UNANSWERED = {"cancelled": "cancelled", "failed": "job_failed"}


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()


def status_dict(job: JobRecord) -> dict[str, Any]:
    """A job's status as the API answers it and the webhook carries it (JSON-ready)."""
    webhook = None
    if job.webhook_url:
        webhook = {
            "url": job.webhook_url,
            "id": job.webhook_id,
            "status": job.webhook_status,
            "attempts": job.webhook_attempts,
            "last": job.webhook_last,
        }
    return {
        "id": job.id,
        "advertiser": job.advertiser,
        "status": job.status,
        "total": job.total,
        "processed": job.processed,
        "ok": job.ok,
        "skipped": job.skipped,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "webhook": webhook,
    }


def unanswered(url: str, reason: str) -> dict[str, Any]:
    """The answer of an image whose chunk never ran (its job was cancelled or failed)."""
    return {
        "url": url,
        "status": "skipped",
        "reason": reason,
        "image_key": None,
        "type": None,
        "color": None,
        "source": None,
        "scores": {"type": {}, "color": {}},
        "model_version": None,
        "near_duplicate_of": None,
    }


def result_page(jobs: JobStore, job: JobRecord, cursor: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Answers from input index `cursor` on, in input order, and the cursor of the next page.

    While the job runs, a page stops before the first image not answered yet (its next cursor
    points there, so polling goes on from it); `None` means the job is over and nothing is left.
    """
    rows = jobs.items(job.id, cursor, limit + 1)
    out: list[dict[str, Any]] = []
    for idx, url, result in rows[:limit]:
        if result is None:
            if not job.terminal:
                return out, idx
            result = unanswered(url, UNANSWERED.get(job.status, job.status))
        out.append(result)
    if len(rows) > limit:
        return out, rows[limit][0]
    return out, None if job.terminal else cursor + len(out)


async def _cancel_the_rest() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ResidentLoop:
    """An event loop of its own in a daemon thread, holding the service's HTTP client (`async with
    service`) for its whole life: a worker's chunks share kept-alive connections and one batcher
    queue, as the server's requests do on the server's loop."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="lotlens-chunks", daemon=True)
        self._thread.start()
        self.call(service.__aenter__())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for it (from any thread but the loop's)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        try:
            self.call(self.service.__aexit__(None, None, None))
            self.call(_cancel_the_rest())  # the batcher's consumer task
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()


class ChunkRunner:
    """Runs chunks through one `Service`; the same in a Celery worker and in serve's own pool.

    Every chunk runs on one event loop: `loop`, when given, is one that another owner runs with the
    same service entered (serve passes its own, so jobs and requests share the HTTP client, the
    decode pool and inference batches); without it the runner starts a `ResidentLoop` on the first
    chunk. Either way a process holds one HTTP client and one batcher queue for all its chunks,
    rather than a new client (new connections) for each.
    """

    def __init__(
        self, settings: Settings, jobs: JobStore, service: Service, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.service = service
        self._loop = loop
        self._resident: ResidentLoop | None = None
        self._lock = threading.Lock()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is not None:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        with self._lock:
            if self._resident is None:
                self._resident = ResidentLoop(self.service)
            resident = self._resident
        return resident.call(coro)

    def close(self) -> None:
        """Close the runner's own loop and its HTTP client (a loop it was given is its owner's)."""
        with self._lock:
            resident, self._resident = self._resident, None
        if resident is not None:
            resident.close()

    def run(self, job_id: str, seq: int) -> JobRecord | None:
        """Run chunk `seq` of a job if it still has to run. Returns the job when this chunk ended it
        (done, or failed after too many tries), so its webhook can go out. Blocking (it waits for
        the chunk on the runner's event loop): call it from a worker thread or process, never from
        that loop."""
        started = self.jobs.start_chunk(job_id, seq, self.settings.job_chunk_tries)
        work = started.work
        if work is None:
            return started.ended
        items = [Item(i.url, i.vehicle_id, i.color) for i in work.items]
        results, stats = self._call(self.service.classify_with_stats(work.advertiser, items))
        log.info(
            "job %s chunk %d (try %d): %d images, %d classified, %d skipped",
            job_id,
            seq,
            work.attempt,
            len(items),
            stats.classified,
            sum(stats.skipped.values()),
        )
        return self.jobs.finish_chunk(job_id, seq, [asdict(r) for r in results])
