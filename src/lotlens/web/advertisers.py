"""Staff's table of advertisers: one row of health figures per advertiser, sortable and searchable."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from lotlens.access import Access
from lotlens.api import AppState
from lotlens.labels import PLACEHOLDER
from lotlens.web.common import State, Who, render, see_other
from lotlens.web.inventory import ListingCache, _inventory_url, build_inventory, parse_filters


@dataclass(frozen=True)
class Health:
    """One advertiser's row in staff's table."""

    advertiser: str
    images: int
    skipped: int
    last_seen: datetime | None
    placeholders: float | None  # shares of the answered images
    low: float | None
    fixed: float | None


HealthSort = Literal["advertiser", "images", "skipped", "placeholders", "low", "fixed", "last_seen"]
HEALTH_SORTS = get_args(HealthSort)


class HealthCache:
    """Each advertiser's row of staff's table, kept while its `Store.inventory_version` stands
    still: a view re-reads only the inventories that changed since the last one (a scrape touches
    most of them once a day; views in between read none), and never floods the listing cache.
    Rows are a few numbers each; `size` bounds them all the same. Each replica keeps its own."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._rows: OrderedDict[str, tuple[tuple[Any, ...], Health]] = OrderedDict()

    def get(self, advertiser: str, version: tuple[Any, ...]) -> Health | None:
        with self._lock:
            hit = self._rows.get(advertiser)
            if hit is None or hit[0] != version:
                return None
            self._rows.move_to_end(advertiser)
            return hit[1]

    def put(self, advertiser: str, version: tuple[Any, ...], row: Health) -> None:
        with self._lock:
            self._rows[advertiser] = (version, row)
            self._rows.move_to_end(advertiser)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)


def health(state: AppState, cache: ListingCache, rows: HealthCache | None = None) -> list[Health]:
    """Every advertiser's figures (blocking: reads the listings that changed since `rows` saw them;
    each with the version read before it, so a change during the read only makes the next view
    read it again)."""
    memo = rows if rows is not None else HealthCache()
    versions = state.store.inventory_versions()
    out = []
    for adv, n, skipped, last in state.store.advertisers():
        version = versions.get(adv, ())
        hit = memo.get(adv, version)
        if hit is not None:
            out.append(hit)
            continue
        listed, answers = cache.peek(state, adv, version)
        inv = build_inventory(state, listed, answers, parse_filters(""))
        answered = [a for _, _, a in inv.matched if a is not None and a.type]
        total = len(answered)

        def share(k: int, total: int = total) -> float | None:
            return k / total if total else None

        row = Health(
            adv,
            n,
            skipped,
            last,
            share(inv.counts[PLACEHOLDER]),
            share(inv.counts["low"]),
            share(sum(bool(a.manual) for a in answered)),
        )
        memo.put(adv, version, row)
        out.append(row)
    return out


router = APIRouter()


@router.get("/advertisers", response_class=HTMLResponse)
async def advertisers(
    request: Request,
    state: State,
    viewer: Who,
    q: Annotated[str, Query(max_length=128)] = "",
    sort: Annotated[HealthSort, Query()] = "advertiser",
    desc: bool = False,
) -> Response:
    if not viewer.staff and viewer.who.advertiser:
        return see_other(_inventory_url(viewer.who.advertiser))
    Access.require_staff(viewer.who)
    rows = await asyncio.to_thread(health, state, request.app.state.lotlens_listings, request.app.state.lotlens_health)
    if q:
        rows = [r for r in rows if q.lower() in r.advertiser.lower()]
    present = [r for r in rows if getattr(r, sort) is not None]
    present.sort(key=lambda r: getattr(r, sort), reverse=desc)
    rows = present + [r for r in rows if getattr(r, sort) is None]
    return render(request, viewer, "advertisers.html", rows=rows, q=q, sort=sort, desc=desc, sorts=HEALTH_SORTS)
