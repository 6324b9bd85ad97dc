"""An advertiser's inventory: cards, filters, paging, fixes from the cards (staff's table: `advertisers`)."""

from __future__ import annotations

import asyncio
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from lotlens.access import Access, FixRequest
from lotlens.api import AppState
from lotlens.config import Settings
from lotlens.labels import COLORS, PLACEHOLDER, TYPES
from lotlens.storage import Storage
from lotlens.store.images import ImageFolder
from lotlens.store.repository import Answer, Listed
from lotlens.web.common import FILTERS, State, Who, check_csrf, render, see_other, web_url

# -- the inventory --------------------------------------------------------------------------------

SORTS = {"newest": "newest scrape first", "unsure": "least sure first", "vehicle": "by vehicle", "file": "by file name"}
PAGE_SIZES = (24, 48, 96, 200)


@dataclass(frozen=True)
class Card:
    """One inventory URL as the page shows it."""

    url: str
    key: str | None
    vehicle_id: str | None
    skipped: str | None
    type: str | None = None
    color: str | None = None
    source: str | None = None
    confidence: float | None = None  # the model's score for the weaker field it made
    thumb: str | None = None
    index: int = 0  # the URL's place in the advertiser's whole listing (newest first), from 1
    first_seen: datetime | None = None
    manual: tuple[str, ...] = ()
    type_score: float | None = None  # None: the field is fixed by hand, or the model gave no score
    color_score: float | None = None
    next_type: tuple[str, float] | None = None  # the model's second choice, offered as a one-click fix
    next_color: tuple[str, float] | None = None

    @property
    def name(self) -> str:
        """What every control of the card is named after: "image 12, vehicle A1-VIN0072"."""
        return f"image {self.index}" + (f", vehicle {self.vehicle_id}" if self.vehicle_id else "")

    @property
    def file(self) -> str:
        return file_name(self.url)

    @property
    def no_color(self) -> bool:
        """A vehicle photo without a color: something for a person to look at."""
        return self.type is not None and self.type != PLACEHOLDER and not self.color


def file_name(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


def _field_scores(ans: Answer, field: str) -> tuple[float | None, tuple[str, float] | None]:
    """The model's score of the shown value and its runner-up, for a field the model decided."""
    if field in ans.manual:
        return None, None
    scores: dict[str, float] = ans.scores.get(field) or {}
    value = getattr(ans, field)
    if not scores or value is None:
        return None, None
    others = sorted(((v, float(s)) for v, s in scores.items() if v != value), key=lambda vs: -vs[1])
    return float(scores.get(value, 0.0)), (others[0] if others else None)


def _card(row: Listed, ans: Answer | None, settings: Settings, index: int) -> Card:
    if ans is None:
        return Card(row.url, row.content_key, row.vehicle_id, row.skipped, index=index, first_seen=row.first_seen)
    type_score, next_type = _field_scores(ans, "type")
    color_score, next_color = _field_scores(ans, "color")
    if ans.type == PLACEHOLDER:
        color_score, next_color = None, None
    return Card(
        row.url,
        row.content_key,
        row.vehicle_id,
        row.skipped,
        ans.type,
        ans.color,
        _source(row, ans),
        _lowest_score(ans),
        _kept_thumb(settings, ans.content_key, 320) or web_url(row.url),
        index,
        row.first_seen,
        ans.manual,
        type_score,
        color_score,
        next_type,
        next_color,
    )


def _source(row: Listed, ans: Answer) -> str:
    """manual when a fix decides a field, else how the latest scrape was answered."""
    return "manual" if ans.manual else (row.source if row.source in ("model", "cache") else "model")


def _kept_thumb(settings: Settings, key: str, side: int, advertiser: str | None = None) -> str | None:
    """The thumbnail URL when the image's bytes are kept, else None (the page uses the CDN's URL)."""
    if not settings.keep_images or not ImageFolder(Storage.from_settings(settings)).exists(key):
        return None
    q = f"?side={side}" + (f"&advertiser={quote(advertiser)}" if advertiser else "")
    return f"/images/{quote(key)}/thumb{q}"


def _inventory_url(advertiser: str) -> str:
    return f"/advertisers/{quote(advertiser, safe='')}"


@dataclass
class Inventory:
    matched: list[tuple[int, Listed, Answer | None]]  # (place in the whole listing, row, answer)
    counts: dict[str, int]
    settings: Settings

    @property
    def total(self) -> int:
        return len(self.matched)

    @property
    def keys(self) -> list[str]:
        """The content keys of every matching URL, in order, once each."""
        return list(dict.fromkeys(row.content_key for _, row, ans in self.matched if row.content_key and ans))

    def cards(self, start: int, stop: int) -> list[Card]:
        """Cards for one page only: the thumbnails' file checks are per shown card."""
        return [_card(row, ans, self.settings, i) for i, row, ans in self.matched[start:stop]]


class ListingCache:
    """The last few advertisers' resolved listings, reused while `Store.inventory_version` stands
    still: paging and filtering one inventory reads the store once. Each replica keeps its own."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[tuple[Any, ...], list[Listed], dict[str, Answer]]] = OrderedDict()

    def get(self, state: AppState, advertiser: str) -> tuple[list[Listed], dict[str, Answer]]:
        version = state.store.inventory_version(advertiser)
        with self._lock:
            hit = self._items.get(advertiser)
            if hit is not None and hit[0] == version:
                self._items.move_to_end(advertiser)
                return hit[1], hit[2]
        rows, answers = _read_listing(state, advertiser)
        with self._lock:
            self._items[advertiser] = (version, rows, answers)
            self._items.move_to_end(advertiser)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return rows, answers

    def peek(
        self, state: AppState, advertiser: str, version: tuple[Any, ...]
    ) -> tuple[list[Listed], dict[str, Answer]]:
        """The listing as `get` gives it, for a one-off read (staff's table): a cached one if still
        at `version`, else read from the store without taking a place in the cache."""
        with self._lock:
            hit = self._items.get(advertiser)
            if hit is not None and hit[0] == version:
                return hit[1], hit[2]
        return _read_listing(state, advertiser)


def _read_listing(state: AppState, advertiser: str) -> tuple[list[Listed], dict[str, Answer]]:
    rows = state.store.listing(advertiser)
    return rows, state.store.answers([r.content_key for r in rows if r.content_key], advertiser)


def inventory(state: AppState, advertiser: str, filters: dict[str, Any], cache: ListingCache) -> Inventory:
    """The advertiser's URLs that pass the filters, in the asked order, with their answers
    (blocking: reads the store)."""
    rows, answers = cache.get(state, advertiser)
    return build_inventory(state, rows, answers, filters)


def build_inventory(
    state: AppState, rows: list[Listed], answers: dict[str, Answer], filters: dict[str, Any]
) -> Inventory:
    """`inventory` of a listing already read."""
    low = state.settings.low_confidence
    counts = dict.fromkeys([*TYPES, "skipped", "low"], 0)
    out = []
    for i, row in enumerate(rows, 1):
        ans = answers.get(row.content_key) if row.content_key else None
        lowest = _lowest_score(ans) if ans is not None else None
        is_low = lowest is not None and lowest < low
        if ans is not None and ans.type:
            counts[ans.type] += 1
            counts["low"] += is_low
        if row.skipped:
            counts["skipped"] += 1
        if _matches(row, ans, filters, is_low):
            out.append((i, row, ans))
    sort = filters.get("sort") or "newest"
    if sort == "unsure":  # the least sure first; answers a person decided (or none) last
        out.sort(key=lambda t: _unsure_key(t[2]))
    elif sort == "vehicle":
        out.sort(key=lambda t: ((t[1].vehicle_id or "\uffff").lower(), t[0]))
    elif sort == "file":
        out.sort(key=lambda t: (file_name(t[1].url).lower(), t[0]))
    return Inventory(out, counts, state.settings)


def _unsure_key(ans: Answer | None) -> tuple[int, float]:
    lowest = _lowest_score(ans) if ans is not None else None
    return (1, 0.0) if lowest is None else (0, lowest)


def _matches(row: Listed, ans: Answer | None, f: dict[str, Any], is_low: bool) -> bool:
    if f["skipped"] and not row.skipped:
        return False
    if f["vehicle"] and f["vehicle"].lower() not in (row.vehicle_id or "").lower():
        return False
    if f.get("q") and f["q"].lower() not in row.url.lower():
        return False  # the file name is part of the URL: one search finds both
    if not (f["type"] or f["color"] or f["source"] or f["low"]):
        return True
    if ans is None:
        return False
    if f["type"] and ans.type != f["type"]:
        return False
    if f["color"] and (ans.color or "none") != f["color"]:
        return False
    if f["source"] and _source(row, ans) != f["source"]:
        return False
    return is_low if f["low"] else True


def _lowest_score(ans: Answer) -> float | None:
    """The model's score for the weaker of the answer's fields it made (fixed fields are certain)."""
    scores = []
    if "type" not in ans.manual and ans.type:
        scores.append(ans.scores.get("type", {}).get(ans.type, 1.0))
    if "color" not in ans.manual and ans.color:
        scores.append(ans.scores.get("color", {}).get(ans.color, 1.0))
    return min(scores) if scores else None


def parse_filters(query: str) -> dict[str, Any]:
    """The inventory filters from a page's query string, checked as the page's own parameters are
    (a bulk fix of "all matching this filter" names the filter by the page's query)."""
    given = dict(parse_qsl(query))
    f: dict[str, Any] = {
        "type": given.get("type", ""),
        "color": given.get("color", ""),
        "source": given.get("source", ""),
        "low": given.get("low", "") in ("1", "true", "on"),
        "skipped": given.get("skipped", "") in ("1", "true", "on"),
        "vehicle": given.get("vehicle", "")[:128],
        "q": given.get("q", "")[:256],
        "sort": given.get("sort", ""),
    }
    _check_filters(f)
    return f


def _check_filters(f: dict[str, Any]) -> None:
    if f["type"] and f["type"] not in TYPES:
        raise HTTPException(422, f"type must be one of {', '.join(TYPES)}")
    if f["color"] and f["color"] != "none" and f["color"] not in COLORS:
        raise HTTPException(422, f"color must be one of {', '.join(COLORS)} or none")
    if f["source"] and f["source"] not in ("model", "cache", "manual"):
        raise HTTPException(422, "source must be model, cache or manual")
    if f["sort"] and f["sort"] not in SORTS:
        raise HTTPException(422, f"sort must be one of {', '.join(SORTS)}")


class FixForm(BaseModel):
    csrf: str = Field(max_length=200)
    image_key: str = Field(min_length=3, max_length=66)
    type: str | None = Field(default=None, max_length=32)
    color: str | None = Field(default=None, max_length=32)  # "" = no color (placeholders)
    scope: Literal["advertiser", "global"] = "advertiser"
    comment: str | None = Field(default=None, max_length=2000)
    back: str = Field(default="", max_length=2000)


def _filters_from(back: str) -> str:
    """Keep only the inventory's own filters from a returned query string."""
    return urlencode([(k, v) for k, v in parse_qsl(back) if k in FILTERS])


def _fix_changes(current: Answer, form: FixForm) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    if form.type and form.type != current.type:
        changes["type"] = form.type
    new_type = changes.get("type", current.type)
    color = form.color or None
    if form.color is not None and new_type != PLACEHOLDER and color != current.color:
        changes["color"] = color
    return changes


router = APIRouter()


@router.get("/advertisers/{advertiser:path}", response_class=HTMLResponse)
async def advertiser_page(
    request: Request,
    advertiser: str,
    state: State,
    viewer: Who,
    type: Annotated[Literal["Dealer", "Stock", "Placeholder", ""], Query()] = "",
    color: Annotated[str, Query(max_length=32)] = "",
    source: Annotated[Literal["model", "cache", "manual", ""], Query()] = "",
    low: bool = False,
    skipped: bool = False,
    vehicle: Annotated[str, Query(max_length=128)] = "",
    q: Annotated[str, Query(max_length=256)] = "",
    sort: Annotated[Literal["newest", "unsure", "vehicle", "file", ""], Query()] = "",
    per: Annotated[Literal["24", "48", "96", "200", ""], Query()] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    updated: Annotated[str, Query(max_length=66)] = "",
) -> Response:
    Access.advertiser_view(viewer.who, advertiser)
    filters = {
        "type": type, "color": color, "source": source, "low": low, "skipped": skipped, "vehicle": vehicle,
        "q": q, "sort": sort,
    }  # fmt: skip
    _check_filters(filters)
    inv = await asyncio.to_thread(inventory, state, advertiser, filters, request.app.state.lotlens_listings)
    size = int(per) if per else state.settings.page_size
    pages = max(1, math.ceil(inv.total / size))
    page = min(page, pages)
    active = {k: ("1" if val is True else val) for k, val in filters.items() if val}
    if per:
        active["per"] = per
    just = None
    if updated:
        ans = (await asyncio.to_thread(state.store.answers, [updated], advertiser)).get(updated)
        history = await asyncio.to_thread(state.access.fix_history, viewer.who, advertiser, content_key=updated)
        if ans is not None:
            just = {"answer": ans, "history": history[-4:][::-1]}
    return render(
        request,
        viewer,
        "advertiser.html",
        advertiser=advertiser,
        inv=inv,
        cards=await asyncio.to_thread(inv.cards, (page - 1) * size, page * size),
        page=page,
        pages=pages,
        per=int(per) if per else 0,
        filters=filters,
        query=urlencode(active),
        page_query=lambda n: urlencode({**active, "page": n}),
        just=just,
        updated=updated,
        low=state.settings.low_confidence,
        sorts=SORTS,
        page_sizes=PAGE_SIZES,
    )


@router.post("/advertisers/{advertiser:path}/fix")
async def fix(advertiser: str, state: State, viewer: Who, form: Annotated[FixForm, Form()]) -> Response:
    check_csrf(viewer, form.csrf)
    back = f"{_inventory_url(advertiser)}?{_filters_from(form.back)}".rstrip("?")
    _, current = await asyncio.to_thread(state.access.answer, viewer.who, form.image_key, advertiser)
    fix = FixRequest(form.image_key, _fix_changes(current, form), advertiser, form.scope, form.comment or None)
    if not fix.changes:
        await asyncio.to_thread(state.access.may_fix, viewer.who, fix)  # a refused form is refused, changed or not
        return see_other(back, done="unchanged", updated=form.image_key)
    await asyncio.to_thread(state.access.record_fix, viewer.who, fix)
    return see_other(back, updated=form.image_key)


# -- bulk fixes, confirmations and undo (the page's script calls these; each answers JSON) -------------
