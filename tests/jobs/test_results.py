"""Result pages while a job runs and after it ends (no model: answers written as a worker would)."""

from __future__ import annotations

from pathlib import Path

from lotlens.jobs import result_page
from lotlens.store import Store
from lotlens.store.jobs import JobInput, JobStore


def _answer(url: str) -> dict[str, object]:
    return {"url": url, "status": "ok", "type": "Dealer"}


def test_pages_stop_before_the_first_image_not_answered_while_the_job_runs(tmp_path: Path) -> None:
    jobs = JobStore(Store.from_url(f"sqlite:///{tmp_path / 'j.db'}"))
    urls = [f"https://cdn.x/{i}.jpg" for i in range(3)]
    job, _ = jobs.create("a", "k", [JobInput(u) for u in urls], 1)

    def page(cursor: int, limit: int = 10) -> tuple[list[str], int | None]:
        current = jobs.get(job.id)
        assert current is not None
        rows, nxt = result_page(jobs, current, cursor, limit)
        return [str(r["url"]) for r in rows], nxt

    assert page(0) == ([], 0)
    for seq in (2, 0):
        work = jobs.start_chunk(job.id, seq, 3).work
        assert work is not None
        jobs.finish_chunk(job.id, seq, [_answer(i.url) for i in work.items])
    assert page(0) == (urls[:1], 1)  # index 2 is answered, but 1 is not yet: a caller must not skip it
    assert page(1) == ([], 1)
    work = jobs.start_chunk(job.id, 1, 3).work
    assert work is not None
    jobs.finish_chunk(job.id, 1, [_answer(i.url) for i in work.items])
    assert page(0, limit=2) == (urls[:2], 2)
    assert page(2) == (urls[2:], None)


def test_a_cancelled_job_answers_every_image(tmp_path: Path) -> None:
    jobs = JobStore(Store.from_url(f"sqlite:///{tmp_path / 'j.db'}"))
    job, _ = jobs.create("a", "k", [JobInput(f"https://cdn.x/{i}.jpg") for i in range(2)], 1)
    work = jobs.start_chunk(job.id, 0, 3).work
    assert work is not None
    jobs.finish_chunk(job.id, 0, [_answer(i.url) for i in work.items])
    cancelled = jobs.cancel(job.id)
    assert cancelled is not None
    rows, nxt = result_page(jobs, cancelled, 0, 10)
    assert nxt is None
    assert [(r["status"], r.get("reason")) for r in rows] == [("ok", None), ("skipped", "cancelled")]
