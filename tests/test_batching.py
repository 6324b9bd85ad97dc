"""Dynamic batching: concurrent callers share model calls, each gets its own answers in order, a
batch stays on its own model, and a model error reaches only the callers of that call."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from lotlens.batching import Batcher
from lotlens.imaging import RGBArray


class Recorder:
    """Answers each image with (its model's name, its first pixel), and remembers call sizes."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.sizes: list[int] = []

    def classify(self, images: Sequence[RGBArray], with_color: Sequence[bool] | None = None) -> list[Any]:
        self.sizes.append(len(images))
        if self.fail:
            raise RuntimeError("model broke")
        return [(self.name, int(im[0, 0, 0]), c) for im, c in zip(images, with_color or [], strict=True)]


def images(*values: int) -> list[RGBArray]:
    return [np.full((2, 2, 3), v, np.uint8) for v in values]


def test_concurrent_callers_share_model_calls_and_keep_their_own_answers() -> None:
    model = Recorder("m")
    batcher = Batcher(max_batch=64, max_wait=0.2)

    async def main() -> list[list[Any]]:
        return await asyncio.gather(
            *(batcher.classify(model, images(10 * i, 10 * i + 1), [True, i % 2 == 0]) for i in range(5))
        )

    answers = asyncio.run(main())
    assert answers == [[("m", 10 * i, True), ("m", 10 * i + 1, i % 2 == 0)] for i in range(5)]
    assert sum(model.sizes) == 10
    assert len(model.sizes) < 5  # callers were batched together


def test_max_batch_bounds_a_call_and_each_batch_stays_on_its_model() -> None:
    old, new = Recorder("old"), Recorder("new")
    batcher = Batcher(max_batch=4, max_wait=0.1)

    async def main() -> list[list[Any]]:
        return await asyncio.gather(
            batcher.classify(old, images(1, 2, 3), [True] * 3),
            batcher.classify(new, images(4, 5), [True] * 2),
            batcher.classify(old, images(6, 7, 8), [True] * 3),
        )

    a, b, c = asyncio.run(main())
    assert {x[0] for x in a + c} == {"old"}
    assert {x[0] for x in b} == {"new"}
    assert [x[1] for x in a + b + c] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert max(old.sizes + new.sizes) <= 4  # whole requests, never past max_batch


def test_a_request_that_would_overfill_a_call_opens_the_next_one_beside_it() -> None:
    # The service's groups of one batch (9 and 16 images, max_batch 16) go to both slots at once,
    # not into one call of 25 on one core.
    model = Slow(0.3)  # a call outlasts the wait for a group to fill, as a model call does
    batcher = Batcher(max_batch=16, max_wait=0.02, parallel=2)

    async def main() -> list[list[Any]]:
        return await asyncio.gather(
            batcher.classify(model, images(*range(9)), [True] * 9),
            batcher.classify(model, images(*range(9, 25)), [True] * 16),
        )

    a, b = asyncio.run(main())
    assert a + b == list(range(25))
    assert sorted(model.sizes) == [9, 16]
    assert model.most == 2


def test_small_requests_fill_a_call_up_to_max_batch_and_the_rest_open_the_next() -> None:
    model = Recorder("m")
    batcher = Batcher(max_batch=5, max_wait=0.2)

    async def main() -> list[list[Any]]:
        return await asyncio.gather(*(batcher.classify(model, images(2 * i, 2 * i + 1), [True] * 2) for i in range(4)))

    answers = asyncio.run(main())
    assert [x[1] for a in answers for x in a] == list(range(8))
    assert model.sizes == [4, 4]  # 2 + 2 (a third request of 2 would make 6 > 5), then the rest


def test_a_model_error_reaches_the_callers_of_that_call_only() -> None:
    broken, fine = Recorder("broken", fail=True), Recorder("fine")
    batcher = Batcher(max_batch=16, max_wait=0.1)

    async def main() -> tuple[Any, Any]:
        return await asyncio.gather(
            batcher.classify(broken, images(1), [True]),
            batcher.classify(fine, images(2), [True]),
            return_exceptions=True,
        )

    err, ok = asyncio.run(main())
    assert isinstance(err, RuntimeError)
    assert ok == [("fine", 2, True)]


def test_each_event_loop_gets_its_own_queue() -> None:
    model = Recorder("m")
    batcher = Batcher(max_batch=8, max_wait=0.01)
    for v in (1, 2, 3):  # the CLI and workers run one loop per chunk
        assert asyncio.run(batcher.classify(model, images(v), [False])) == [("m", v, False)]


def test_nothing_to_classify_makes_no_call() -> None:
    model = Recorder("m")
    assert asyncio.run(Batcher(8, 0.01).classify(model, [], [])) == []
    assert model.sizes == []


class Slow:
    """Holds each call for a moment and records how many calls were inside at once."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.inside = 0
        self.most = 0
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def classify(self, images: Sequence[RGBArray], with_color: Sequence[bool] | None = None) -> list[Any]:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.sizes.append(len(images))
        time.sleep(self.hold)
        with self._lock:
            self.inside -= 1
        return [int(im[0, 0, 0]) for im in images]


def test_a_lone_request_does_not_wait_for_company_while_another_slot_is_idle() -> None:
    # A cold one-image request used to wait max_wait for a group that could only have run beside
    # it on the idle slot; here max_wait is a minute, so the old code times out.
    model = Recorder("m")
    batcher = Batcher(max_batch=16, max_wait=60.0, parallel=2)

    async def main() -> list[Any]:
        return await asyncio.wait_for(batcher.classify(model, images(7), [True]), 10)

    assert asyncio.run(main()) == [("m", 7, True)]
    assert model.sizes == [1]


def test_with_every_other_slot_busy_a_call_waits_for_company() -> None:
    model = Slow(0.5)
    batcher = Batcher(max_batch=16, max_wait=0.3, parallel=2)

    async def main() -> list[list[Any]]:
        first = asyncio.ensure_future(batcher.classify(model, images(1), [True]))
        await asyncio.sleep(0.05)  # the first runs alone on one slot (the other was idle)
        second = asyncio.ensure_future(batcher.classify(model, images(2), [True]))
        await asyncio.sleep(0.05)  # the second waits for company: no other slot is idle
        third = batcher.classify(model, images(3), [True])
        return await asyncio.gather(first, second, third)

    assert asyncio.run(main()) == [[1], [2], [3]]
    assert model.sizes == [1, 2]


@pytest.mark.parametrize("parallel", [1, 2])
def test_at_most_parallel_calls_run_at_once_and_answers_stay_in_order(parallel: int) -> None:
    model = Slow(0.05)
    batcher = Batcher(max_batch=2, max_wait=0.0, parallel=parallel)

    async def main() -> list[list[Any]]:
        return await asyncio.gather(*(batcher.classify(model, images(2 * i, 2 * i + 1), [True] * 2) for i in range(6)))

    assert asyncio.run(main()) == [[2 * i, 2 * i + 1] for i in range(6)]
    assert model.most == parallel  # the second slot is used when there is one, and never a third
    assert sum(model.sizes) == 12


def test_parallel_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Batcher(8, 0.01, parallel=0)


def test_freed_memory_goes_back_once_the_batcher_has_been_idle_and_off_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lotlens.batching

    trims: list[str] = []
    monkeypatch.setattr(lotlens.batching, "release_free_memory", lambda: trims.append(threading.current_thread().name))
    good, bad = Recorder("good"), Recorder("bad", fail=True)
    batcher = Batcher(max_batch=2, max_wait=0.01, trim_after=0.3)

    async def burst() -> list[Any]:
        return await asyncio.gather(
            batcher.classify(good, images(1, 2, 3, 4), [True] * 4),
            batcher.classify(bad, images(5), [True]),
            batcher.classify(good, images(6, 7), [True] * 2),
            return_exceptions=True,
        )

    async def main() -> tuple[list[Any], list[int]]:
        first = await burst()
        seen = []
        for _ in range(3):  # bursts closer together than trim_after: no trim between them
            await asyncio.sleep(0.05)
            await burst()
            seen.append(len(trims))
        await asyncio.sleep(1.0)  # idle for longer: one trim (a failed call among the last burst's)
        seen.append(len(trims))
        return first, seen

    first, seen = asyncio.run(main())
    assert first[0] == [("good", v, True) for v in (1, 2, 3, 4)]
    assert first[2] == [("good", 6, True), ("good", 7, True)]
    assert isinstance(first[1], Exception)
    assert len(good.sizes) + len(bad.sizes) == 12  # three calls a burst (a request of 4 goes alone)
    # Not after every call (12 here): pages given back are faulted in again by the next one.
    assert seen == [0, 0, 0, 1]
    assert threading.main_thread().name not in trims


def test_release_free_memory_runs_on_this_system() -> None:
    from lotlens.memory import _glibc, release_free_memory

    release_free_memory()  # a no-op off glibc, a trim here
    assert (_glibc() is not None) == (os.uname().sysname == "Linux")
