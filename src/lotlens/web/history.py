"""The fix history, filtered, as a page and as CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse

from lotlens.access import Access
from lotlens.store.repository import FixRecord
from lotlens.web.common import FixFilter, State, Who, _day, csv_cell, render

# -- history --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixQuery:
    """The history filters: as typed (to fill the form again) and as the store takes them."""

    form: dict[str, str]
    store_args: dict[str, Any]

    @property
    def given(self) -> dict[str, str]:
        return {k: val for k, val in self.form.items() if val}


def fix_query(
    viewer: Who,
    advertiser: FixFilter = None,
    since: FixFilter = None,
    until: FixFilter = None,
    actor: FixFilter = None,
    field: FixFilter = None,
) -> FixQuery:
    adv = Access.advertiser_view(viewer.who, advertiser or None)
    if field and field not in ("type", "color"):
        raise HTTPException(422, "field must be type or color")
    d0, d1 = _day(since, "since"), _day(until, "until")
    form = {"advertiser": advertiser, "since": since, "until": until, "actor": actor, "field": field}
    return FixQuery(
        {k: val or "" for k, val in form.items()},
        {
            "advertiser": adv,
            "since": datetime.combine(d0, time.min, UTC) if d0 else None,
            "until": datetime.combine(d1 + timedelta(days=1), time.min, UTC) if d1 else None,  # inclusive day
            "actor": actor or None,
            "field": field or None,
        },
    )


CSV_COLUMNS = ("id", "time", "image_key", "advertiser", "field", "old", "new", "actor", "role", "scope", "comment")


def _csv_rows(fixes: list[FixRecord]) -> Iterator[str]:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for f in fixes:
        w.writerow(
            [
                csv_cell(v)
                for v in (
                    f.id,
                    f.created_at.isoformat(),
                    f.content_key,
                    f.advertiser,
                    f.field,
                    f.old_value,
                    f.new_value,
                    f.actor,
                    f.role,
                    f.scope,
                    f.comment,
                )
            ]
        )
        if buf.tell() > 64_000:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


router = APIRouter()


@router.get("/fixes", response_class=HTMLResponse)
async def fixes_page(
    request: Request,
    state: State,
    viewer: Who,
    f: Annotated[FixQuery, Depends(fix_query)],
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    rows = (await asyncio.to_thread(lambda: state.access.fix_history(viewer.who, **f.store_args)))[::-1]  # newest first
    size = 200
    pages = max(1, math.ceil(len(rows) / size))
    page = min(page, pages)
    return render(
        request,
        viewer,
        "fixes.html",
        rows=rows[(page - 1) * size : page * size],
        total=len(rows),
        page=page,
        pages=pages,
        form=f.form,
        query=urlencode(f.given),
        page_query=lambda n: urlencode({**f.given, "page": n}),
    )


@router.get("/fixes.csv")
async def fixes_csv(state: State, viewer: Who, f: Annotated[FixQuery, Depends(fix_query)]) -> Response:
    rows = await asyncio.to_thread(lambda: state.access.fix_history(viewer.who, **f.store_args))
    name = f"lotlens-fixes-{datetime.now(UTC):%Y%m%d-%H%M}.csv"
    return StreamingResponse(
        _csv_rows(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
