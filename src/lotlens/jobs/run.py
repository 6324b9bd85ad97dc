"""One chunk end to end (claim -> classify through the service -> store the answers), and the
job status and result pages every edge (API, CLI, webhooks) shows."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from lotlens.config import Settings
from lotlens.service import Item, Service
from lotlens.store.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)

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


class ChunkRunner:
    """Runs chunks through one `Service`; the same in a Celery worker and in serve's own pool."""

    def __init__(self, settings: Settings, jobs: JobStore, service: Service) -> None:
        self.settings = settings
        self.jobs = jobs
        self.service = service

    def run(self, job_id: str, seq: int) -> JobRecord | None:
        """Run chunk `seq` of a job if it still has to run. Returns the job when this chunk ended it
        (done, or failed after too many tries), so its webhook can go out. Blocking: it runs the
        service's event loop itself (`asyncio.run`), so call it from a worker thread or process."""
        started = self.jobs.start_chunk(job_id, seq, self.settings.job_chunk_tries)
        work = started.work
        if work is None:
            return started.ended
        items = [Item(i.url, i.vehicle_id, i.color) for i in work.items]
        results, stats = asyncio.run(self.service.classify_with_stats(work.advertiser, items))
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
