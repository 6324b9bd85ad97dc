"""Jobs on Celery: the app, its two tasks, the runner the API publishes through, and the fleet-wide
per-host download limit.

Tasks carry ids only (job, chunk, webhook try), never image bytes. Late acks, one message prefetched
and `task_reject_on_worker_lost`: a worker killed mid-chunk leaves its message unacknowledged, the
broker hands it to another worker, and the store's guarded chunk rows make the redo overwrite, never
duplicate. Each worker process opens the store and loads the champion once, after the fork, and
checks the registry's alias every `model_poll_seconds` between chunks, like the server.

Per-host download limits hold across the fleet through the store (`host_leases`): a download takes
one of `fetch_per_host` slots of its host, a row with a lease that runs out if its worker dies. The
store rather than Redis, because it is there whatever the broker (RabbitMQ or Redis) and every
worker already talks to it. A worker keeps a slot it took for the next download of the same host
(`FleetFetcher`): a chunk's downloads of one host take a slot once, not once each (a take and a
give-back are two transactions, about 3 ms of a worker's CPU and more of PostgreSQL's: as much as
seven images answered from the cache after their conditional GETs).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from lotlens.config import Settings
from lotlens.fetch import Fetched, Fetcher
from lotlens.jobs.run import ChunkRunner
from lotlens.jobs.webhooks import deliver
from lotlens.service import Service
from lotlens.store import Store
from lotlens.store.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)

RUN_CHUNK = "lotlens.run_chunk"
DELIVER_WEBHOOK = "lotlens.deliver_webhook"
MONITOR = "lotlens.monitor"
MONITOR_EVERY = 24 * 3600.0  # seconds between two `monitor` runs on Celery beat (`lotlens worker --beat`)
MAX_COUNTDOWN = 600.0  # longer waits hop: a message held past RabbitMQ's consumer timeout closes the channel
RETRY_SECONDS = 5.0  # before a chunk that raised is tried again


# A slot a download gave back stays with its worker this long for the next download of its host.
SLOT_LINGER = 0.25
# The lease's margin past the longest download (all its tries): a kept slot serves a new download
# only while at least that download fits in what is left of the lease.
LEASE_MARGIN = 30.0


@dataclass(eq=False)  # one object per slot taken: kept lists find it by identity
class _Slot:
    holder: str
    taken: float  # loop time when it was taken
    linger: asyncio.TimerHandle | None = None


class FleetFetcher(Fetcher):
    """A `Fetcher` whose every HEAD and GET also holds one of its host's fleet-wide slots.

    A slot freed by one download is kept for `SLOT_LINGER` seconds and serves the next download
    of its host in this process (at most `fetch_per_host` are in flight here anyway), so a run of
    downloads from one host takes and gives back each slot once. A kept slot is reused only while
    its lease outlasts the longest download; then it is given back and a fresh one taken (which is
    also when another worker waiting for the host gets its turn).
    """

    def __init__(self, settings: Settings, jobs: JobStore) -> None:
        super().__init__(settings)
        self._jobs = jobs
        longest = settings.fetch_total_timeout * (settings.fetch_retries + 1)  # one download with all its tries
        # A slot outlives one download with all its retries; a dead worker's slot frees itself then.
        self._lease = longest + LEASE_MARGIN
        self._reuse_for = LEASE_MARGIN  # seconds after taking it that a slot may start a new download
        # Waiters per host in this process: at most as many as the host has slots, so polling stays small.
        self._local: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.fetch_per_host)
        )
        self._kept: defaultdict[str, list[_Slot]] = defaultdict(list)  # free slots this process holds
        self._giving_back: set[asyncio.Task[None]] = set()
        self.slots_taken = 0  # slots taken from the store (a test and the benchmark read it)

    async def head(self, url: str) -> Fetched:
        async with self._slot(url):
            return await super().head(url)

    async def get(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        async with self._slot(url):
            return await super().get(url, etag, last_modified)

    async def aclose(self) -> None:
        """Give back the kept slots (and wait for those on their way back), then close the client."""
        for host, kept in list(self._kept.items()):
            for slot in kept:
                self._give_back(host, slot.holder)
            kept.clear()
        while self._giving_back:
            await asyncio.gather(*self._giving_back, return_exceptions=True)
        await super().aclose()

    @asynccontextmanager
    async def _slot(self, url: str) -> AsyncIterator[None]:
        host = urlsplit(url).hostname or ""
        async with self._local[host]:
            slot = self._keep_or_none(host)
            if slot is None:
                slot = await self._take(host)
            try:
                yield
            finally:
                self._keep(host, slot)

    def _keep_or_none(self, host: str) -> _Slot | None:
        """A kept slot of `host` young enough for one more download; older ones are given back."""
        loop = asyncio.get_running_loop()
        kept = self._kept[host]
        while kept:
            slot = kept.pop()
            if slot.linger is not None:
                slot.linger.cancel()
                slot.linger = None
            if loop.time() - slot.taken < self._reuse_for:
                return slot
            self._give_back(host, slot.holder)
        return None

    async def _take(self, host: str) -> _Slot:
        holder = secrets.token_hex(16)
        delay = 0.02
        while True:
            attempt = asyncio.ensure_future(
                asyncio.to_thread(self._jobs.acquire_slot, host, self.settings.fetch_per_host, holder, self._lease)
            )
            try:
                # Shielded: a download cancelled (a deadline, a cancelled job) while the store is
                # giving it a slot would otherwise leave that slot taken, and the host a slot short
                # for the fleet, until its lease ran out.
                got = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                attempt.add_done_callback(partial(self._give_back_if_taken, host, holder))
                raise
            if got:
                break
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)
        self.slots_taken += 1
        return _Slot(holder, asyncio.get_running_loop().time())

    def _give_back_if_taken(self, host: str, holder: str, attempt: asyncio.Future[bool]) -> None:
        if not attempt.cancelled() and attempt.exception() is None and attempt.result():
            self._give_back(host, holder)

    def _keep(self, host: str, slot: _Slot) -> None:
        """Keep `slot` for the next download of `host`, giving it back after `SLOT_LINGER` unused
        (or when that download finds it too old: `_keep_or_none`)."""
        loop = asyncio.get_running_loop()
        self._kept[host].append(slot)

        def unused() -> None:
            if slot in self._kept[host]:
                self._kept[host].remove(slot)
                self._give_back(host, slot.holder)

        slot.linger = loop.call_later(SLOT_LINGER, unused)

    def _give_back(self, host: str, holder: str) -> None:
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._jobs.release_slot, host, holder))
        self._giving_back.add(task)
        task.add_done_callback(self._given_back)

    def _given_back(self, task: asyncio.Task[None]) -> None:
        self._giving_back.discard(task)
        if not task.cancelled() and task.exception() is not None:  # its lease frees it in time
            log.warning("giving back a download slot failed: %s", type(task.exception()).__name__)


class WorkerState:
    """What one worker process holds: the store, the champion (loaded once), the chunk runner (its
    event loop and HTTP client started on the first chunk and kept for the process's life)."""

    def __init__(self, settings: Settings) -> None:
        from lotlens.champion import Champion

        self.settings = settings
        self.store = Store.from_url(settings.resolved_database_url(), migrate=False)
        self.jobs = JobStore(self.store)
        self.champion = Champion(settings, self.store)
        self.champion()  # load the model now, not on the first chunk
        self._checked = time.monotonic()
        service = Service(settings, self.store, self.champion, lambda: FleetFetcher(settings, self.jobs))
        self.chunks = ChunkRunner(settings, self.jobs, service)

    def follow_champion(self) -> None:
        """Between chunks: take up a newly promoted champion, at most every `model_poll_seconds`."""
        if time.monotonic() - self._checked < self.settings.model_poll_seconds:
            return
        self._checked = time.monotonic()
        try:
            self.champion.refresh()
        except Exception:  # noqa: BLE001 -- the current model keeps answering whatever happens here
            log.exception("checking the champion failed")

    def close(self) -> None:
        """The chunk runner's loop and client, then the store's connections (the process is ending)."""
        self.chunks.close()
        self.store.engine.dispose()


_state: WorkerState | None = None
_state_lock = threading.Lock()


def worker_state(settings: Settings) -> WorkerState:
    global _state
    with _state_lock:
        if _state is None:
            _state = WorkerState(settings)
        return _state


def make_celery(settings: Settings) -> Any:
    """The Celery app for `settings.broker_url`, with the job tasks registered on it (and only on it:
    `shared=False`, or a second app in the process would get this one's tasks and settings)."""
    from celery import Celery
    from celery.signals import worker_process_init, worker_process_shutdown

    app = Celery("lotlens", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=settings.job_queue,
        broker_connection_retry_on_startup=True,
        # Redis hands an unacknowledged task to another worker after this long; a chunk takes far less.
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout},
    )

    @app.task(name=RUN_CHUNK, bind=True, max_retries=None, shared=False)
    def run_chunk(task: Any, job_id: str, seq: int) -> None:
        state = worker_state(settings)
        state.follow_champion()
        try:
            ended = state.chunks.run(job_id, seq)
        except Exception as exc:  # the store counts tries; past job_chunk_tries the job fails there
            log.exception("job %s chunk %d failed; retrying", job_id, seq)
            raise task.retry(exc=exc, countdown=RETRY_SECONDS) from exc
        if ended is not None and ended.webhook_url:
            send_webhook(app, ended.id, ended.webhook_attempts + 1, 0.0)

    @app.task(name=DELIVER_WEBHOOK, shared=False)
    def deliver_webhook(job_id: str, attempt: int, not_before: float = 0.0) -> None:
        if not_before > time.time():  # still waiting out a long backoff: hop again
            send_webhook(app, job_id, attempt, not_before - time.time())
            return
        state = worker_state(settings)
        delay = deliver(state.jobs, settings, job_id, attempt)
        if delay is not None:
            send_webhook(app, job_id, attempt + 1, delay)

    @app.task(name=MONITOR, shared=False)
    def monitor() -> list[str]:
        """The daily watch (`lotlens monitor`): what moved is logged as a warning and returned."""
        from lotlens.store.registry import Registry
        from lotlens.train.monitor import watch

        store = Store.from_url(settings.resolved_database_url(), migrate=False)
        try:
            flags = list(watch(store, champion=Registry(store).alias("champion")).flags)
        finally:
            store.engine.dispose()
        for flag in flags:
            log.warning("monitor: %s", flag)
        return flags

    app.conf.beat_schedule = {"monitor": {"task": MONITOR, "schedule": MONITOR_EVERY}}

    def init_process(**_: Any) -> None:
        worker_state(settings)

    def end_process(**_: Any) -> None:
        global _state
        with _state_lock:
            state, _state = _state, None
        if state is not None:
            state.close()

    worker_process_init.connect(init_process, weak=False)
    worker_process_shutdown.connect(end_process, weak=False)
    return app


def send_webhook(app: Any, job_id: str, attempt: int, delay: float, connection: Any = None) -> None:
    """Queue try `attempt` of a job's webhook to go out after `delay` seconds."""
    not_before = time.time() + delay
    countdown = min(max(delay, 0.0), MAX_COUNTDOWN)
    app.send_task(DELIVER_WEBHOOK, (job_id, attempt, not_before), countdown=countdown, connection=connection)


class CeleryRunner:
    """The API's side: publishes a job's chunks (ids only) to the broker; workers run them."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.jobs = JobStore(store)
        self.app = make_celery(settings)

    def submit(self, job_id: str) -> None:
        """Publish the job's chunks; a broker that cannot be reached fails the job (said in its
        `error`), rather than leaving it queued with nothing to run it."""
        from kombu.exceptions import OperationalError

        try:
            # One connection per call, closed after: Celery's producer pool keeps its sockets past close().
            with self.app.connection_for_write() as conn:
                for seq in self.jobs.pending_chunks(job_id):
                    self.app.send_task(RUN_CHUNK, (job_id, seq), connection=conn, retry=False)
        except OperationalError as exc:
            log.error("job %s: broker unreachable: %s", job_id, exc)
            ended = self.jobs.fail(job_id, f"the broker could not be reached: {exc}")
            if ended is not None and ended.webhook_url:
                self.ended(ended)

    def ended(self, job: JobRecord) -> None:
        from kombu.exceptions import OperationalError

        if job.webhook_url:
            try:
                with self.app.connection_for_write() as conn:
                    send_webhook(self.app, job.id, job.webhook_attempts + 1, 0.0, conn)
            except OperationalError as exc:  # the webhook stays pending in the store, visible in the status
                log.error("job %s: webhook not queued, broker unreachable: %s", job.id, exc)

    def close(self) -> None:
        self.app.close()
