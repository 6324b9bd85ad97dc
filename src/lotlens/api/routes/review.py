"""`/v1/review`: dataset candidates a person must judge (staff)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from lotlens.api import paging
from lotlens.api.deps import Caller, State
from lotlens.api.schemas import DecisionIn, ReviewItemOut, ReviewPage, Text
from lotlens.store.review import ReviewQueue, sort_key

router = APIRouter(tags=["review"])


@router.get("/v1/review", response_model=ReviewPage, operation_id="list_review")
def review_queue(
    state: State,
    caller: Caller,
    dataset: Annotated[Text | None, Query(max_length=64)] = None,
    status: Literal["pending", "accepted", "rejected", "relabelled"] | None = "pending",
    cursor: paging.Cursor = None,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
) -> ReviewPage:
    """Dataset candidates to judge, a page at a time: conflicts first, then the labels the model
    doubts most. Deciding items between pages moves no other item across the cursor."""
    state.access.require_staff(caller)
    after = paging.decode(cursor, "review", (int, float, int))
    rows = ReviewQueue(state.store).items(dataset, status, after=after, limit=limit + 1)
    rows, next_cursor = paging.page(rows, limit, "review", sort_key)
    return ReviewPage(items=[ReviewItemOut(**asdict(r)) for r in rows], next_cursor=next_cursor)


@router.post("/v1/review/{item_id}", response_model=ReviewItemOut, operation_id="decide_review")
def review_decide(
    item_id: Annotated[int, Path(ge=1, le=2**63 - 1)], body: DecisionIn, state: State, caller: Caller
) -> ReviewItemOut:
    """Accept, reject or relabel a candidate; the next dataset version applies the decision."""
    state.access.require_staff(caller)
    return ReviewItemOut(**asdict(ReviewQueue(state.store).decide(item_id, body.action, caller.name, body.value)))
