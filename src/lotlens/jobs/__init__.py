"""Large batches as jobs: cut into chunks that Celery workers run (`LOTLENS_BROKER_URL`), or a
bounded pool inside `lotlens serve` without a broker; signed webhooks when a job ends.

Job, chunk and answer state live in the store (`lotlens.store.jobs`), never only in the broker, and
image bytes never travel through it: a task names a chunk, the worker reads its URLs from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from lotlens.config import Settings
from lotlens.jobs.run import ChunkRunner, result_page, status_dict
from lotlens.service import Service
from lotlens.store import Store
from lotlens.store.jobs import JobRecord, JobStore
from lotlens.vision import Pipeline

__all__ = ["ChunkRunner", "Runner", "result_page", "start_runner", "status_dict"]


class Runner(Protocol):
    """What the API needs from whatever runs jobs."""

    jobs: JobStore

    def submit(self, job_id: str) -> None:
        """Have a new job's chunks run."""

    def ended(self, job: JobRecord) -> None:
        """A job is over (here: cancelled by a caller); send its webhook."""

    def close(self) -> None: ...


def start_runner(
    settings: Settings,
    store: Store,
    pipeline: Callable[[], Pipeline],
    service: Service | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Runner:
    """Celery when a broker is configured, else serve's own pool (which takes up unfinished jobs),
    running its chunks through `service` on `loop` (the server's) when given."""
    if settings.broker_url:
        from lotlens.jobs.worker import CeleryRunner

        return CeleryRunner(settings, store)
    from lotlens.jobs.embedded import EmbeddedRunner

    runner = EmbeddedRunner(settings, store, pipeline, service=service, loop=loop)
    runner.resume()
    return runner
