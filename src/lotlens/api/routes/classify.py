"""`POST /v1/classify`: a small batch answered within the request (large ones go to jobs)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from lotlens.api.deps import Caller, State
from lotlens.api.problems import ApiError
from lotlens.api.schemas import ClassifyIn, ClassifyOut, ResultOut
from lotlens.service import Item

router = APIRouter(tags=["classify"])


@router.post("/v1/classify", response_model=ClassifyOut, operation_id="classify")
async def classify(body: ClassifyIn, state: State, caller: Caller) -> ClassifyOut:
    """Answer a batch of an advertiser's image URLs, in order; failures are `skipped` with a reason.

    What is not answered within `LOTLENS_BATCH_DEADLINE` seconds is skipped with reason `deadline`.
    """
    state.access.may_classify(caller, body.advertiser)
    limit = state.settings.max_batch
    if len(body.images) > limit:
        raise ApiError(413, "too_many_images", f"{len(body.images)} images; at most {limit} per request")
    items = [Item(i.url, i.vehicle_id, i.color) for i in body.images]
    results, stats = await state.service.classify_with_stats(
        body.advertiser, items, deadline=state.settings.batch_deadline
    )
    state.metrics.batch(results, stats)
    return ClassifyOut(results=[ResultOut(**asdict(r)) for r in results])
