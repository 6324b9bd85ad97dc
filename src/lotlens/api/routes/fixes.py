"""`/v1/fixes`: manual fixes, validated whole before any write, written in one transaction, and
safe to retry with an `Idempotency-Key`."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query

from lotlens.access import FixRequest
from lotlens.api import paging
from lotlens.api.deps import Caller, State
from lotlens.api.routes.images import image_out
from lotlens.api.schemas import FixIn, FixOut, FixPage, ImageOut, Text

router = APIRouter(tags=["fixes"])


@router.post("/v1/fixes", status_code=201, response_model=ImageOut, operation_id="add_fix")
def add_fix(
    body: FixIn,
    state: State,
    caller: Caller,
    idempotency_key: Annotated[
        Text | None,
        Header(
            min_length=1,
            max_length=255,
            description="a retry with the same key and body within 24 h returns the first answer and writes "
            "nothing; the same key with another body is a 409",
        ),
    ] = None,
) -> ImageOut:
    """Record a manual fix of type and/or color; returns the image's new answer and history."""
    fix = FixRequest(body.image_key, body.changes(), body.advertiser, body.scope, body.comment)
    idempotency = None
    if idempotency_key is not None:
        digest = hashlib.sha256(json.dumps(body.model_dump(exclude_unset=True), sort_keys=True).encode()).hexdigest()
        idempotency = (idempotency_key, digest)
    advertiser, _ = state.access.record_fix(caller, fix, idempotency)
    return image_out(state, caller, body.image_key, advertiser)


@router.get("/v1/fixes", response_model=FixPage, operation_id="list_fixes")
def list_fixes(
    state: State,
    caller: Caller,
    advertiser: Annotated[Text | None, Query(max_length=128)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601")] = None,
    cursor: paging.Cursor = None,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
) -> FixPage:
    """The fix history, oldest first, a page at a time: the input of the next retraining."""
    after = paging.decode(cursor, "fixes", (datetime, int))
    advertiser = state.access.advertiser_view(caller, advertiser)
    rows = state.access.fix_history(caller, advertiser, since=since, after=after, limit=limit + 1)
    rows, next_cursor = paging.page(rows, limit, "fixes", lambda f: (f.created_at, f.id))
    return FixPage(fixes=[FixOut.of(f) for f in rows], next_cursor=next_cursor)
