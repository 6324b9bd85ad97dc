"""Bulk fixes from the inventory page: many images' type and/or color at once, "Looks right"
confirmations, and undo of the page's last action by compensating fixes (the history stays
append-only). Answers are JSON with the changed cards rendered again, so the page swaps them in
place without a reload."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lotlens.access import Access, FixRequest
from lotlens.api import AppState
from lotlens.errors import InvalidInput, NotFound
from lotlens.web.common import State, Who, card_macro, check_csrf
from lotlens.web.inventory import FixForm, ListingCache, _card, _filters_from, _fix_changes, inventory, parse_filters
from lotlens.web.session import Viewer

MAX_BULK = 5000  # images in one bulk fix: each is its own transaction, checked before the first

router = APIRouter()


class BulkForm(BaseModel):
    csrf: str = Field(max_length=200)
    keys: list[Annotated[str, Field(min_length=3, max_length=66)]] = Field(default_factory=list, max_length=10_000)
    all: bool = False  # every image matching `filter`, not only `keys`
    filter: str = Field(default="", max_length=2000)  # the page's query string
    type: str | None = Field(default=None, max_length=32)
    color: str | None = Field(default=None, max_length=32)  # "" = no color; absent = leave it
    fields: list[Literal["type", "color"]] = Field(default_factory=list, max_length=2)  # what a confirmation confirms
    confirm: bool = False  # "Looks right": record the current answer as a confirmed label
    scope: Literal["advertiser", "global"] = "advertiser"
    comment: str | None = Field(default=None, max_length=2000)


class UndoForm(BaseModel):
    csrf: str = Field(max_length=200)
    fix_ids: list[int] = Field(min_length=1, max_length=20_000)


def _bulk_requests(
    state: AppState, viewer: Viewer, advertiser: str, form: BulkForm, cache: ListingCache
) -> list[FixRequest]:
    """One fix request per image that changes (or, for a confirmation, per image with a model answer
    to confirm); blocking: reads the store."""
    if form.all:
        keys = inventory(state, advertiser, parse_filters(form.filter), cache).keys
    else:
        keys = list(dict.fromkeys(form.keys))
    if not keys:
        raise InvalidInput("select at least one image", "empty_selection")
    if len(keys) > MAX_BULK:
        raise InvalidInput(f"at most {MAX_BULK} images in one bulk fix: narrow the filter", "too_many")
    for key in keys:
        state.access.image_view(viewer.who, key, advertiser)
    answers = state.store.answers(keys, advertiser)
    out = []
    for key in keys:
        current = answers.get(key)
        if current is None:
            raise NotFound(f"unknown image {key!r}", "unknown_image")
        if form.confirm:
            fields: list[str] = list(form.fields) or ["type", "color"]
            changes: dict[str, str | None] = {
                f: getattr(current, f) for f in fields if f not in current.manual and getattr(current, f)
            }
            if changes:
                out.append(FixRequest(key, changes, advertiser, form.scope, form.comment or None, confirmation=True))
            continue
        one = FixForm(csrf=form.csrf, image_key=key, type=form.type, color=form.color, scope=form.scope)
        changes = _fix_changes(current, one)
        if changes:
            out.append(FixRequest(key, changes, advertiser, form.scope, form.comment or None))
    return out


def _cards_html(
    state: AppState, viewer: Viewer, advertiser: str, keys: set[str], cache: ListingCache, back: str
) -> dict[str, str]:
    """The changed cards rendered again, by their place in the listing (an image shown under two
    URLs is two cards), so the page swaps them in place: no reload, no jump."""
    rows, answers = cache.get(state, advertiser)
    low = state.settings.low_confidence
    return {
        str(i): str(
            card_macro(_card(row, answers.get(row.content_key), state.settings, i), advertiser, viewer, back, low)
        )
        for i, row in enumerate(rows, 1)
        if row.content_key in keys
    }


@router.post("/advertisers/{advertiser:path}/bulk")
async def bulk(
    request: Request, advertiser: str, state: State, viewer: Who, form: Annotated[BulkForm, Form()]
) -> Response:
    """Set type and/or color of many images at once, or confirm their answers ("Looks right")."""
    check_csrf(viewer, form.csrf)
    Access.advertiser_view(viewer.who, advertiser)
    cache = request.app.state.lotlens_listings
    requests = await asyncio.to_thread(_bulk_requests, state, viewer, advertiser, form, cache)
    rows = await asyncio.to_thread(state.access.record_fixes, viewer.who, requests) if requests else []
    keys = {r.image_key for r in requests}
    back = _filters_from(form.filter)
    cards = await asyncio.to_thread(_cards_html, state, viewer, advertiser, keys, cache, back)
    verb = "Confirmed" if form.confirm else "Saved"
    n = len(keys)
    message = f"{verb} {n} image{'' if n == 1 else 's'}." if n else "Nothing changed: they already had that answer."
    return JSONResponse({"message": message, "fix_ids": [r.id for r in rows], "changed": sorted(keys), "cards": cards})


@router.post("/advertisers/{advertiser:path}/undo")
async def undo(
    request: Request, advertiser: str, state: State, viewer: Who, form: Annotated[UndoForm, Form()]
) -> Response:
    """Undo the page's last action: compensating fixes, the history stays append-only."""
    check_csrf(viewer, form.csrf)
    Access.advertiser_view(viewer.who, advertiser)
    rows = await asyncio.to_thread(state.access.undo_fixes, viewer.who, advertiser, form.fix_ids)
    keys = {r.content_key for r in rows}
    cache = request.app.state.lotlens_listings
    cards = await asyncio.to_thread(_cards_html, state, viewer, advertiser, keys, cache, "")
    n = len(keys)
    return JSONResponse({"message": f"Undone: {n} image{'' if n == 1 else 's'} back as before.", "cards": cards})
