"""Jobs without a broker: a bounded pool of threads inside `lotlens serve` runs them, chunk by chunk.

Same store rows and the same `ChunkRunner` as the Celery workers, so the answers are the same; jobs
left queued or running by a stopped server are taken up again when the next one starts. Inside the
server the chunks run on the server's event loop through its `Service`: one HTTP client, one decode
pool, one memory budget, and inference batched across requests and jobs alike.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from lotlens.config import Settings
from lotlens.fetch import Fetcher
from lotlens.jobs.run import ChunkRunner
from lotlens.jobs.webhooks import deliver
from lotlens.service import Service
from lotlens.store import Store
from lotlens.store.jobs import JobRecord, JobStore
from lotlens.vision import Pipeline

log = logging.getLogger(__name__)


class EmbeddedRunner:
    """Runs jobs in `settings.job_pool` threads (one job at a time each, its chunks in order) and
    delivers webhooks from one more thread, retries waiting on timers."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        pipeline: Callable[[], Pipeline],
        fetcher: Callable[[], Fetcher] | None = None,
        *,
        service: Service | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """`service` and `loop`: the server's (its service entered on that loop); without them the
        runner makes a service of its own and runs it on a loop of its own."""
        self.settings = settings
        self.jobs = JobStore(store)
        service = service or Service(settings, store, pipeline, fetcher)
        self.chunks = ChunkRunner(settings, self.jobs, service, loop)
        self._pool = ThreadPoolExecutor(settings.job_pool, thread_name_prefix="lotlens-job")
        self._hooks = ThreadPoolExecutor(1, thread_name_prefix="lotlens-webhook")
        self._changed = threading.Condition()
        self._timers: set[threading.Timer] = set()
        self._busy: dict[str, int] = {}  # job id -> its chunk loop and webhook tries not over yet
        self._closed = False

    def resume(self) -> None:
        """Take up the jobs and webhooks a stopped server left behind."""
        for job_id in self.jobs.unfinished():
            self.submit(job_id)
        for job_id in self.jobs.webhooks_due():
            job = self.jobs.get(job_id)
            if job is not None:
                self.ended(job)

    def submit(self, job_id: str) -> None:
        self._begin(job_id)
        self._pool.submit(self._run_job, job_id)

    def ended(self, job: JobRecord) -> None:
        """A job is over (done, failed or cancelled): its webhook, if any, goes out."""
        if job.webhook_url and not self._closed:
            self._begin(job.id)
            self._hooks.submit(self._deliver, job.id, job.webhook_attempts + 1)

    def wait(self, job_id: str, timeout: float) -> bool:
        """Block until this runner has nothing left to do for the job (its chunks and its webhook's
        tries); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._busy.get(job_id), timeout)

    def _begin(self, job_id: str) -> None:
        with self._changed:
            self._busy[job_id] = self._busy.get(job_id, 0) + 1

    def _end(self, job_id: str) -> None:
        with self._changed:
            self._busy[job_id] -= 1
            if not self._busy[job_id]:
                del self._busy[job_id]
            self._changed.notify_all()

    def close(self) -> None:
        """Stop after the chunks running now; what is left stays queued in the store."""
        self._closed = True
        with self._changed:
            for t in self._timers:
                t.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._hooks.shutdown(wait=True, cancel_futures=True)
        self.chunks.close()

    def _run_job(self, job_id: str) -> None:
        try:
            for seq in self.jobs.pending_chunks(job_id):
                if self._closed:
                    return
                ended = self._run_chunk(job_id, seq)
                if ended is not None:
                    self.ended(ended)
        finally:
            self._end(job_id)

    def _run_chunk(self, job_id: str, seq: int) -> JobRecord | None:
        while True:  # each try counts in the store; past `job_chunk_tries` the job fails and this ends
            try:
                return self.chunks.run(job_id, seq)
            except Exception:  # noqa: BLE001 -- a store outage or a bug: logged, the chunk tried again
                log.exception("job %s chunk %d failed; trying it again", job_id, seq)
                if self._closed:
                    return None

    def _deliver(self, job_id: str, attempt: int) -> None:
        try:
            delay = deliver(self.jobs, self.settings, job_id, attempt)
        except Exception:  # noqa: BLE001 -- a store outage: logged; the next server start tries again
            log.exception("webhook of job %s, try %d, failed", job_id, attempt)
            delay = None
        if delay is None or self._closed:
            self._end(job_id)
            return
        timer = threading.Timer(delay, self._retry, (job_id, attempt + 1))
        timer.daemon = True
        with self._changed:
            self._timers.add(timer)
        timer.start()

    def _retry(self, job_id: str, attempt: int) -> None:
        with self._changed:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
        if self._closed:
            self._end(job_id)
        else:
            self._hooks.submit(self._deliver, job_id, attempt)
