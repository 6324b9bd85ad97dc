"""Webhook signing and retries, and the fleet-wide per-host download limit (and its kept slots)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from receivers import SECRET, image_host

from lotlens.config import Settings
from lotlens.jobs.webhooks import backoff, deliver, sign
from lotlens.jobs.worker import SLOT_LINGER, FleetFetcher
from lotlens.store import Store
from lotlens.store.jobs import JobInput, JobStore


def test_signature_matches_the_standard_webhooks_example() -> None:
    # The example of the Standard Webhooks reference libraries' tests.
    got = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_default_retries_are_at_least_five_tries_over_an_hour() -> None:
    s = Settings()
    assert s.webhook_tries >= 5
    waits = [backoff(s, k) for k in range(1, s.webhook_tries)]
    assert waits == sorted(waits)
    assert sum(waits) >= 3600


def test_a_timeout_counts_as_a_failed_try_and_the_last_try_gives_up(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, webhook_secret=SECRET, webhook_tries=2, webhook_backoff=7, allow_private_addresses=True
    )
    jobs = JobStore(Store.from_url(settings.resolved_database_url()))
    job, _ = jobs.create("a", "k", [JobInput("https://cdn.x/1.jpg")], 10, webhook_url="http://127.0.0.1:9/in")
    jobs.cancel(job.id)

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    assert deliver(jobs, settings, job.id, 1, httpx.MockTransport(timeout)) == 7
    assert deliver(jobs, settings, job.id, 1, httpx.MockTransport(timeout)) is None  # that try was made
    after = jobs.get(job.id)
    assert after is not None
    assert after.webhook_last is not None
    assert (after.webhook_status, after.webhook_attempts, after.webhook_last["error"]) == ("pending", 1, "timeout")
    assert deliver(jobs, settings, job.id, 2, httpx.MockTransport(lambda r: httpx.Response(503))) is None
    after = jobs.get(job.id)
    assert after is not None
    assert after.webhook_last is not None
    assert (after.webhook_status, after.webhook_attempts, after.webhook_last["status_code"]) == ("failed", 2, 503)


class CountingJobs(JobStore):
    """Counts the times a slot was refused, so the test knows the limit was put to the test."""

    refused = 0
    tested = threading.Event()

    def acquire_slot(self, host: str, limit: int, holder: str, lease_seconds: float) -> bool:
        got = super().acquire_slot(host, limit, holder, lease_seconds)
        if not got:
            CountingJobs.refused += 1
            if CountingJobs.refused >= 4:
                CountingJobs.tested.set()
        return got


def test_per_host_limit_holds_across_workers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, allow_private_addresses=True, fetch_per_host=2, fetch_retries=0)
    jobs = CountingJobs(Store.from_url(settings.resolved_database_url()))
    with image_host() as host:

        async def worker() -> list[int]:
            async with FleetFetcher(settings, jobs) as f:
                got = await asyncio.gather(*(f.get(f"{host.url}/count/{i}.jpg") for i in range(3)))
            return [g.status for g in got]

        async def two_workers() -> list[list[int]]:
            return list(await asyncio.gather(worker(), worker()))

        out: list[list[list[int]]] = []
        t = threading.Thread(target=lambda: out.append(asyncio.run(two_workers())))
        t.start()
        assert CountingJobs.tested.wait(60)  # others asked for a slot while two downloads were held
        with host.waiting:
            assert host.in_flight == 2
        host.release.set()
        t.join(60)
    assert out == [[[200] * 3, [200] * 3]]
    assert host.peak == 2  # each worker alone would have allowed 2: 4 without the shared limit
    assert jobs.slots_held(host.url.split("//")[1].split(":")[0]) == 0


def _host_name(url: str) -> str:
    return url.split("//")[1].split(":")[0]


def test_a_slot_serves_the_next_downloads_of_its_host_and_goes_back_unused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, allow_private_addresses=True, fetch_per_host=2, fetch_retries=0)
    jobs = JobStore(Store.from_url(settings.resolved_database_url()))
    with image_host() as host:
        name = _host_name(host.url)

        async def run() -> tuple[list[int], int, int, int, int]:
            async with FleetFetcher(settings, jobs) as f:
                got = await asyncio.gather(*(f.get(f"{host.url}/{i}.jpg") for i in range(12)))
                kept = await asyncio.to_thread(jobs.slots_held, name)  # kept for the next download
                await asyncio.sleep(SLOT_LINGER * 3)
                after_linger = await asyncio.to_thread(jobs.slots_held, name)
                await f.get(f"{host.url}/again.jpg")
                taken = f.slots_taken
            return [g.status for g in got], kept, after_linger, taken, jobs.slots_held(name)

        statuses, kept, after_linger, taken, at_close = asyncio.run(run())
    assert statuses == [200] * 12
    assert 1 <= kept <= 2  # at most the host's limit, and held a while after the downloads
    assert after_linger == 0  # unused for SLOT_LINGER: back to the fleet
    assert taken <= 3  # 13 downloads, two at a time: each slot taken once, plus one after the linger
    assert at_close == 0


def test_a_slot_near_its_lease_end_is_given_back_not_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, allow_private_addresses=True, fetch_per_host=1, fetch_retries=0)
    jobs = JobStore(Store.from_url(settings.resolved_database_url()))
    with image_host() as host:

        async def run() -> tuple[int, int]:
            async with FleetFetcher(settings, jobs) as f:
                f._reuse_for = 0.0  # every slot is too old to start another download in its lease
                for i in range(4):
                    await f.get(f"{host.url}/{i}.jpg")
                taken = f.slots_taken
            return taken, jobs.slots_held(_host_name(host.url))

        taken, held = asyncio.run(run())
    assert (taken, held) == (4, 0)


class SlowJobs(JobStore):
    """Takes a while to grant a slot, so that a download can be cancelled while it does."""

    def acquire_slot(self, host: str, limit: int, holder: str, lease_seconds: float) -> bool:
        time.sleep(0.3)
        return super().acquire_slot(host, limit, holder, lease_seconds)


def test_a_download_cancelled_while_its_slot_is_granted_gives_the_slot_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, allow_private_addresses=True, fetch_per_host=1, fetch_retries=0)
    jobs = SlowJobs(Store.from_url(settings.resolved_database_url()))
    with image_host() as host:
        name = _host_name(host.url)

        async def run() -> tuple[int, int]:
            async with FleetFetcher(settings, jobs) as f:
                download = asyncio.create_task(f.get(f"{host.url}/1.jpg"))
                await asyncio.sleep(0.1)  # the store is granting the slot now
                download.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await download
                await asyncio.sleep(0.6)  # the grant lands, and goes straight back
                held = await asyncio.to_thread(jobs.slots_held, name)
                # and the host's one slot is free for the next download
                got = await asyncio.wait_for(f.get(f"{host.url}/2.jpg"), 5)
            return held, got.status

        assert asyncio.run(run()) == (0, 200)
