"""An advertiser's vehicles: its photos grouped by `vehicle_id`, the color they vote for, the
vehicles with no real photo (placeholders only), and the placeholder share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from lotlens.access import Access
from lotlens.api import AppState
from lotlens.labels import PLACEHOLDER
from lotlens.store.repository import Answer
from lotlens.vision.vehicle import VehicleColor, vehicle_color
from lotlens.web.common import State, Who, render
from lotlens.web.inventory import Card, ListingCache, _card

NO_VEHICLE = ""  # images sent without a vehicle id


@dataclass
class Vehicle:
    """One vehicle id of one advertiser, as the page shows it."""

    vehicle_id: str
    cards: list[Card] = field(default_factory=list)
    color: VehicleColor = VehicleColor(None, 0.0, 0)

    @property
    def placeholders(self) -> int:
        return sum(c.type == PLACEHOLDER for c in self.cards)

    @property
    def no_real_photo(self) -> bool:
        """Only placeholders (or nothing answered): the listing shows no picture of the car."""
        return not any(c.type and c.type != PLACEHOLDER for c in self.cards)


def vehicles(state: AppState, advertiser: str, cache: ListingCache) -> list[Vehicle]:
    """The advertiser's vehicles, those without a real photo first (blocking: reads the store)."""
    rows, answers = cache.get(state, advertiser)
    out: dict[str, Vehicle] = {}
    votes: dict[str, list[Answer]] = {}
    for i, row in enumerate(rows, 1):
        ans = answers.get(row.content_key) if row.content_key else None
        v = out.setdefault(row.vehicle_id or NO_VEHICLE, Vehicle(row.vehicle_id or NO_VEHICLE))
        v.cards.append(_card(row, ans, state.settings, i))
        if ans is not None:
            votes.setdefault(v.vehicle_id, []).append(ans)
    for vid, v in out.items():
        v.color = vehicle_color(votes.get(vid, []))
    return sorted(out.values(), key=lambda v: (not v.no_real_photo, v.vehicle_id == NO_VEHICLE, v.vehicle_id))


router = APIRouter()


@router.get("/advertisers/{advertiser}/vehicles", response_class=HTMLResponse)
async def vehicles_page(
    request: Request,
    advertiser: str,
    state: State,
    viewer: Who,
    show: Annotated[Literal["all", "no-photo"], Query()] = "all",
) -> Response:
    Access.advertiser_view(viewer.who, advertiser)
    found = await asyncio.to_thread(vehicles, state, advertiser, request.app.state.lotlens_listings)
    images = sum(len(v.cards) for v in found)
    placeholders = sum(v.placeholders for v in found)
    no_photo = [v for v in found if v.no_real_photo and v.vehicle_id != NO_VEHICLE]
    return render(
        request,
        viewer,
        "vehicles.html",
        advertiser=advertiser,
        vehicles=no_photo if show == "no-photo" else found,
        show=show,
        total=len([v for v in found if v.vehicle_id != NO_VEHICLE]),
        no_photo=len(no_photo),
        placeholder_share=placeholders / images if images else None,
    )
