"""The dataset review queue: conflicts first, then doubts; accept, reject, relabel."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from lotlens.access import Access
from lotlens.errors import InvalidInput
from lotlens.store.review import ReviewQueue
from lotlens.web.common import REVIEW_PAGE, State, Who, check_csrf, render, see_other
from lotlens.web.inventory import _kept_thumb


class DecisionForm(BaseModel):
    csrf: str = Field(max_length=200)
    action: Literal["accept", "reject", "relabel", "undo"]
    value: str | None = Field(default=None, max_length=32)
    back: str = Field(default="", max_length=2000)


router = APIRouter()


@router.get("/review", response_class=HTMLResponse)
async def review_page(
    request: Request,
    state: State,
    viewer: Who,
    dataset: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[Literal["pending", "accepted", "rejected", "relabelled", ""], Query()] = "pending",
    error: Annotated[str, Query(max_length=16)] = "",
    item: Annotated[int, Query(ge=0, lt=2**63)] = 0,
) -> Response:
    Access.require_staff(viewer.who)
    everything = await asyncio.to_thread(ReviewQueue(state.store).items, dataset or None, status or None)
    items = everything[:REVIEW_PAGE]  # the most urgent first; deciding them brings up the next
    datasets = await asyncio.to_thread(ReviewQueue(state.store).datasets)
    thumbs = {i.content_key: _kept_thumb(state.settings, i.content_key, 160) for i in items}
    shared = await asyncio.to_thread(state.store.answers, [i.content_key for i in items], None)
    # relabel starts on the model's best guess: the item's own, else the image's current answer
    guesses = {i.id: i.model_value or getattr(shared.get(i.content_key), i.field, None) for i in items}
    return render(
        request,
        viewer,
        "review.html",
        items=items,
        total=len(everything),
        thumbs=thumbs,
        guesses=guesses,
        decided=item,
        datasets=datasets,
        dataset=dataset or "",
        status=status,
        error="A conflict has several labels: relabel it with the right one, or reject it."
        if error == "conflict"
        else "",
    )


@router.post("/review/{item_id}")
async def review_decide(item_id: int, state: State, viewer: Who, form: Annotated[DecisionForm, Form()]) -> Response:
    check_csrf(viewer, form.csrf)
    Access.require_staff(viewer.who)
    back = "/review?" + urlencode([(k, val) for k, val in parse_qsl(form.back) if k in ("dataset", "status")])
    queue = ReviewQueue(state.store)
    if form.action == "undo":
        await asyncio.to_thread(queue.reopen, item_id)
        return see_other(back, done="reopened")
    try:
        rec = await asyncio.to_thread(queue.decide, item_id, form.action, viewer.who.name, form.value)
    except InvalidInput as exc:
        if exc.code == "conflict_labels":
            return see_other(back, error="conflict")
        raise
    return see_other(back, done=rec.status, item=str(rec.id))
