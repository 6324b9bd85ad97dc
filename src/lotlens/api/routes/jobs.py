"""The job routes: submit a whole inventory, read its status and answers (pages or JSON Lines),
cancel it, list jobs. Same keys and roles as `/v1/classify`: an advertiser key sees only its own
advertiser's jobs, a scraper key the jobs it submitted, staff and admin every job."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from lotlens.access import Principal
from lotlens.api.deps import Caller, State
from lotlens.api.problems import ApiError
from lotlens.api.schemas import Advertiser, ImageIn, ResultOut
from lotlens.errors import FetchError, PermissionDenied
from lotlens.jobs import Runner, result_page, status_dict
from lotlens.jobs.webhooks import check_url
from lotlens.store.jobs import STATUSES, JobInput, JobRecord

NDJSON = "application/x-ndjson"

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobIn(BaseModel):
    advertiser: Advertiser
    images: list[ImageIn]
    webhook_url: str | None = Field(default=None, min_length=1, max_length=2048)


class WebhookOut(BaseModel):
    url: str
    id: str | None
    status: Literal["pending", "delivered", "failed"] | None
    attempts: int
    last: dict[str, Any] | None = Field(description='the last try: {"at", "status_code", "error"}')


class JobOut(BaseModel):
    id: str
    advertiser: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    total: int
    processed: int
    ok: int
    skipped: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    webhook: WebhookOut | None


class ResultsOut(BaseModel):
    results: list[ResultOut]
    next_cursor: str | None = Field(description="null once the job is over and nothing is left")


class JobsOut(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


def runner(request: Request) -> Runner:
    run: Runner = request.app.state.jobs
    return run


Jobs = Annotated[Runner, Depends(runner)]


def _out(job: JobRecord) -> JobOut:
    return JobOut.model_validate(status_dict(job))


def _visible(who: Principal, job: JobRecord) -> bool:
    if who.is_staff:
        return True
    if who.advertiser is not None:
        return job.advertiser == who.advertiser
    return job.owner == who.name


def _job(run: Runner, who: Principal, job_id: str) -> JobRecord:
    """The job, if `who` may see it; 404 alike for unknown and for someone else's."""
    job = run.jobs.get(job_id) if len(job_id) <= 32 else None
    if job is None or not _visible(who, job):
        raise ApiError(404, "unknown_job", f"no job {job_id!r}")
    return job


@router.post("", status_code=202, response_model=JobOut, operation_id="submit_job")
def submit(
    body: JobIn,
    response: Response,
    st: State,
    who: Caller,
    run: Jobs,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobOut:
    """Queue an advertiser's images as a job; answers come in chunks, in input order, at
    `/v1/jobs/{id}/results`. The same `Idempotency-Key` and body within 24 h return the first job."""
    settings = st.settings
    st.access.may_classify(who, body.advertiser)
    if not body.images:
        raise ApiError(422, "empty_job", "a job needs at least one image")
    if len(body.images) > settings.max_job:
        raise ApiError(413, "too_many_images", f"{len(body.images)} images; at most {settings.max_job} per job")
    if body.webhook_url:
        if settings.webhook_secret is None:
            raise ApiError(422, "webhook_refused", "webhooks need LOTLENS_WEBHOOK_SECRET configured on the server")
        try:
            check_url(settings, body.webhook_url)
        except FetchError as exc:
            raise ApiError(422, "webhook_refused", f"webhook_url refused: {exc.reason} ({exc.detail})") from exc
    digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    job, created = run.jobs.create(
        body.advertiser,
        who.name,
        [JobInput(i.url, i.vehicle_id, i.color) for i in body.images],
        settings.job_chunk,
        webhook_url=body.webhook_url,
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    if not created and job.request_hash != digest:
        raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was used with another body in the last 24 h")
    if created:
        run.submit(job.id)
        job = run.jobs.get(job.id) or job  # failed already if the broker could not be reached
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return _out(job)


@router.get("", response_model=JobsOut, operation_id="list_jobs")
def list_jobs(
    who: Caller,
    run: Jobs,
    advertiser: str | None = None,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(STATUSES) + ")$")] = None,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobsOut:
    """Jobs newest first, paged by `cursor` (the previous page's `next_cursor`)."""
    owner = None
    if not who.is_staff:
        if who.advertiser is not None:
            if advertiser not in (None, who.advertiser):
                raise PermissionDenied("advertiser keys list only their own jobs")
            advertiser = who.advertiser
        else:
            owner = who.name
    rows = run.jobs.search(advertiser, owner, status, cursor, limit + 1)
    return JobsOut(jobs=[_out(j) for j in rows[:limit]], next_cursor=rows[limit - 1].id if len(rows) > limit else None)


@router.get("/{job_id}", response_model=JobOut, operation_id="get_job")
def get_job(job_id: str, who: Caller, run: Jobs) -> JobOut:
    """A job's status, counters and webhook deliveries."""
    return _out(_job(run, who, job_id))


@router.get("/{job_id}/results", response_model=ResultsOut, operation_id="job_results")
def results(
    job_id: str,
    request: Request,
    who: Caller,
    run: Jobs,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,9}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Answers in input order, the same objects as `/v1/classify`. With `Accept: application/x-ndjson`
    every answer there is so far, one JSON object a line, streamed."""
    job = _job(run, who, job_id)
    start = int(cursor or 0)
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(_lines(run, job, start), media_type=NDJSON)
    page, nxt = result_page(run.jobs, job, start, limit)
    return ResultsOut(results=[ResultOut(**r) for r in page], next_cursor=None if nxt is None else str(nxt))


def _lines(run: Runner, job: JobRecord, start: int) -> Iterator[bytes]:
    cursor: int | None = start
    while cursor is not None:
        page, nxt = result_page(run.jobs, job, cursor, 1000)
        for r in page:
            yield ResultOut(**r).model_dump_json().encode() + b"\n"
        cursor = nxt if page else None


@router.delete("/{job_id}", response_model=JobOut, operation_id="cancel_job")
def cancel(job_id: str, who: Caller, run: Jobs) -> JobOut:
    """Cancel a queued or running job: chunks not started never run (those running finish)."""
    job = _job(run, who, job_id)
    cancelled = run.jobs.cancel(job.id)
    if cancelled is not None:
        run.ended(cancelled)
        return _out(cancelled)
    job = run.jobs.get(job.id) or job
    if job.status != "cancelled":
        raise ApiError(409, "job_over", f"job {job.id} is already {job.status}")
    return _out(job)
