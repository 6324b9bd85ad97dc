"""Dynamic batching of inference across concurrent batches (API requests, job chunks), as LitServe
and Triton do: calls queue up, and one model call takes whole requests up to `max_batch` images
(a request bigger than that alone), waiting at most `max_wait` seconds for a group to fill once it
has one, and only while every other call slot is busy: with a slot idle, a request that came
during the wait would run beside this call at once, so waiting would only delay this one (a cold
one-image request paid `max_wait` for nothing). At most `parallel` model calls run at once per
process: two keep the cores busy (one call's Python part, resizes, signals and boxes, runs while
onnxruntime works on the other's) without more onnxruntime threads than cores competing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lotlens.imaging import RGBArray
from lotlens.memory import release_free_memory

# Model calls in flight at once per process: the Python half of one call (resizes, signals, boxes)
# runs while onnxruntime works on the other, each call with its share of the cores
# (`champion.serving_threads`), so no core waits and none is oversubscribed.
INFERENCE_CALLS = 2

# Seconds with nothing to answer before the heap's freed buffers go back to the system
# (`lotlens.memory`), off the loop. Not after every call: pages given back are faulted in again by
# the next one, and between a batch's groups the batcher is often idle for a moment. The memory
# probe of bench_service (1,000 images): trimmed after every call 10.1 s, peak 527 MiB; never
# trimmed 8.1 s, 539 MiB (the shared onnxruntime arena and two malloc arenas bound the peak).
TRIM_AFTER = 1.0


class Model(Protocol):
    def classify(self, images: Sequence[RGBArray], with_color: Sequence[bool] | None = None) -> list[Any]: ...


@dataclass
class _Request:
    model: Model
    images: list[RGBArray]
    with_color: list[bool]
    done: asyncio.Future[list[Any]] = field(repr=False)


class _Requests(asyncio.Queue[_Request]):
    """One event loop's requests; `unanswered` counts them from their arrival to their answer
    (queued, held for the next call, or in a call); `trim` is the heap trim due if none comes."""

    unanswered = 0
    trim: asyncio.TimerHandle | None = None


async def _get(queue: asyncio.Queue[_Request], timeout: float) -> _Request | None:
    """The next request: one already queued at once, else the first to come within `timeout`."""
    if not queue.empty():
        return queue.get_nowait()
    if timeout <= 0:
        return None
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return None


class Batcher:
    """`await batcher.classify(model, images, with_color)`: the same answers as `model.classify`,
    computed together with the images other callers asked for at about the same time.

    Works on any event loop (the CLI and workers start one per run): each loop gets its own queue
    and its own consumer task.
    """

    def __init__(self, max_batch: int, max_wait: float, parallel: int = 1, trim_after: float = TRIM_AFTER) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.parallel = parallel
        self.trim_after = trim_after
        self._queues: dict[asyncio.AbstractEventLoop, _Requests] = {}
        self.calls = 0  # model calls made: a test and the benchmark read it

    async def classify(self, model: Model, images: Sequence[RGBArray], with_color: Sequence[bool]) -> list[Any]:
        if not images:
            return []
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Requests()
            loop.create_task(self._consume(queue), name="lotlens-batcher")
            for gone in [q for q in self._queues if q.is_closed()]:
                del self._queues[gone]
        request = _Request(model, list(images), list(with_color), loop.create_future())
        queue.unanswered += 1
        if queue.trim is not None:
            queue.trim.cancel()
            queue.trim = None
        await queue.put(request)
        return await request.done

    async def _consume(self, queue: _Requests) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.parallel)
        running: set[asyncio.Task[None]] = set()
        held: _Request | None = None  # a request that would have overfilled the last call: the next one's first
        while True:
            await slots.acquire()  # while every slot is busy, callers queue up and the next group grows
            if held is not None:
                first, held = held, None
            else:
                first = await queue.get()
            group = [first]
            size = len(first.images)
            # What already waits joins the call; more is waited for only while no other slot is idle.
            idle_slot = len(running) < self.parallel - 1
            until = loop.time() + (0.0 if idle_slot else self.max_wait)
            while size < self.max_batch:
                nxt = await _get(queue, until - loop.time())
                if nxt is None:
                    break
                if size + len(nxt.images) > self.max_batch:
                    # Whole requests only, and no call past max_batch: this one opens the next call,
                    # which a free slot runs beside this one (two groups of 9 and 16 images were one
                    # call of 25 on one core while the other core waited).
                    held = nxt
                    break
                group.append(nxt)
                size += len(nxt.images)
            task = loop.create_task(self._run(group, slots, queue))
            running.add(task)
            task.add_done_callback(running.discard)

    async def _run(self, group: list[_Request], slots: asyncio.Semaphore, queue: _Requests) -> None:
        try:
            # A batch finishes on the model it started with: one call per model in the group.
            for model in {id(r.model): r.model for r in group}.values():
                mine = [r for r in group if r.model is model and not r.done.cancelled()]
                if not mine:
                    continue
                images = [im for r in mine for im in r.images]
                flags = [c for r in mine for c in r.with_color]
                try:
                    preds = await asyncio.to_thread(model.classify, images, flags)
                except Exception as exc:  # noqa: BLE001 -- handed to each caller, who skips its images
                    for r in mine:
                        if not r.done.done():
                            r.done.set_exception(exc)
                    continue
                self.calls += 1
                start = 0
                for r in mine:
                    if not r.done.done():
                        r.done.set_result(preds[start : start + len(r.images)])
                    start += len(r.images)
        finally:
            slots.release()
            queue.unanswered -= len(group)
            if queue.unanswered == 0:
                loop = asyncio.get_running_loop()
                queue.trim = loop.call_later(self.trim_after, loop.run_in_executor, None, release_free_memory)
