"""The review pages' routes: inventory, image, history, review queue, models, sign-in.

Every rule about who may see or change what is the API's own (`lotlens.api`), called here with the
signed-in viewer; every form carries the session's CSRF token and answers with a redirect (POST,
then GET), so a reload never repeats a fix.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lotlens.access import LOCAL_ADMIN, Access, FixRequest
from lotlens.api import STORE_RETRY_SECONDS, AppState, state
from lotlens.api.problems import domain_error, store_error, validation_error
from lotlens.api.problems import http_error as api_http_error
from lotlens.config import Settings
from lotlens.errors import Conflict, ImageDecodeError, InvalidInput, LotlensError, NotFound, PermissionDenied
from lotlens.imaging import thumbnail_jpeg
from lotlens.labels import COLORS, PLACEHOLDER, TYPES
from lotlens.store.images import ImageFolder
from lotlens.store.repository import Answer, FixRecord, Listed
from lotlens.store.review import ReviewQueue
from lotlens.web.plots import line_chart, sparkline
from lotlens.web.session import COOKIE, SIGNIN_COOKIE, Sessions, Viewer, new_token, same_token

SOURCES = ("model", "cache", "manual")
FILTERS = ("type", "color", "source", "low", "skipped", "vehicle", "page")
THUMB_SIDES = (160, 320, 640)
REVIEW_PAGE = 200
NOTICES = {
    "unchanged": ("info", "Nothing changed: the form held the current answer."),
    "accepted": ("ok", "Accepted."),
    "rejected": ("ok", "Rejected: it stays out of the next dataset."),
    "relabelled": ("ok", "Relabelled."),
    "promoted": ("ok", "Promoted. Servers follow within the poll interval."),
    "rolled_back": ("ok", "Rolled back. Servers follow within the poll interval."),
}

# -- page helpers ---------------------------------------------------------------------------------


def web_url(url: str | None) -> str | None:
    """`url` when a browser may follow it (http or https), else None: a scraped `javascript:` or
    `data:` URL is shown as text, never as a link."""
    if not url:
        return None
    scheme = url.split(":", 1)[0].strip().lower() if ":" in url else ""
    return url if scheme in ("http", "https") else None


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ TAB or CR would run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _templates() -> Jinja2Templates:
    env = Environment(loader=PackageLoader("lotlens.web", "templates"), autoescape=select_autoescape())
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * float(v):.1f}%"
    env.filters["when"] = lambda t: "" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    env.filters["web_url"] = web_url
    env.filters["short"] = lambda k: (k or "")[:14]
    env.globals.update(TYPES=TYPES, COLORS=COLORS, SOURCES=SOURCES, PLACEHOLDER=PLACEHOLDER)
    return Jinja2Templates(env=env)


TEMPLATES = _templates()


def sessions(request: Request) -> Sessions:
    s: Sessions = request.app.state.lotlens_sessions
    return s


class SignInRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def viewer(request: Request, s: Annotated[Sessions, Depends(sessions)]) -> Viewer:
    """The signed-in viewer; a page asked for without a session redirects to the sign-in form."""
    found = s.viewer(request.cookies.get(COOKIE))
    if found is not None:
        return found
    if s.open:  # local mode: a session (for its CSRF token) without signing in
        cookie, csrf = s.issue(None)
        return Viewer(LOCAL_ADMIN, csrf, cookie)
    if request.method != "GET":
        raise HTTPException(403, "your session has ended: sign in again")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise SignInRequired(target)


State = Annotated[AppState, Depends(state)]
Who = Annotated[Viewer, Depends(viewer)]
FixFilter = Annotated[str | None, Query(max_length=128)]


def render(request: Request, v: Viewer | None, template: str, code: int = 200, **ctx: Any) -> HTMLResponse:
    notice = NOTICES.get(request.query_params.get("done", ""))
    page = TEMPLATES.TemplateResponse(
        request,
        template,
        {"viewer": v, "notice": notice, "csrf": Markup(_csrf_input(v)) if v else "", **ctx},
        status_code=code,
    )
    if v is not None and v.cookie:
        _set_session(request, page, v.cookie)
    return page


def _csrf_input(v: Viewer) -> str:
    return f'<input type="hidden" name="csrf" value="{v.csrf}">'


def _set_session(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=sessions(request).max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def check_csrf(v: Viewer, token: str | None) -> None:
    if not same_token(v.csrf, token):
        raise HTTPException(403, "the form's security token is missing or stale: reload the page and try again")


def see_other(url: str, **params: str) -> RedirectResponse:
    extra = urlencode({k: v for k, v in params.items() if v})
    if extra:
        url += ("&" if "?" in url else "?") + extra
    return RedirectResponse(url, status_code=303)


def _local_path(url: str | None) -> str:
    """Only a path on this site: a sign-in never redirects elsewhere."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise HTTPException(422, f"{name} must be a date like 2026-11-29") from exc


# -- the inventory --------------------------------------------------------------------------------


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


def _card(row: Listed, ans: Answer | None, settings: Settings) -> Card:
    if ans is None:
        return Card(row.url, row.content_key, row.vehicle_id, row.skipped)
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
    )


def _source(row: Listed, ans: Answer) -> str:
    """manual when a fix decides a field, else how the latest scrape was answered."""
    return "manual" if ans.manual else (row.source if row.source in ("model", "cache") else "model")


def _kept_thumb(settings: Settings, key: str, side: int, advertiser: str | None = None) -> str | None:
    """The thumbnail URL when the image's bytes are kept, else None (the page uses the CDN's URL)."""
    if not settings.keep_images or not ImageFolder(settings.data_dir).path(key).exists():
        return None
    q = f"?side={side}" + (f"&advertiser={quote(advertiser)}" if advertiser else "")
    return f"/images/{quote(key)}/thumb{q}"


def _inventory_url(advertiser: str) -> str:
    return f"/advertisers/{quote(advertiser, safe='')}"


@dataclass
class Inventory:
    matched: list[tuple[Listed, Answer | None]]
    counts: dict[str, int]
    settings: Settings

    @property
    def total(self) -> int:
        return len(self.matched)

    def cards(self, start: int, stop: int) -> list[Card]:
        """Cards for one page only: the thumbnails' file checks are per shown card."""
        return [_card(row, ans, self.settings) for row, ans in self.matched[start:stop]]


class ListingCache:
    """The last few advertisers' resolved listings, reused while `Store.inventory_version` stands
    still: paging and filtering one inventory reads the store once. Each replica keeps its own."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[tuple[Any, ...], list[Listed], dict[str, Answer]]] = OrderedDict()

    def get(self, st: AppState, advertiser: str) -> tuple[list[Listed], dict[str, Answer]]:
        version = st.store.inventory_version(advertiser)
        with self._lock:
            hit = self._items.get(advertiser)
            if hit is not None and hit[0] == version:
                self._items.move_to_end(advertiser)
                return hit[1], hit[2]
        rows = st.store.listing(advertiser)
        answers = st.store.answers([r.content_key for r in rows if r.content_key], advertiser)
        with self._lock:
            self._items[advertiser] = (version, rows, answers)
            self._items.move_to_end(advertiser)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return rows, answers


def inventory(st: AppState, advertiser: str, filters: dict[str, Any], cache: ListingCache) -> Inventory:
    """The advertiser's URLs that pass the filters, with their answers (blocking: reads the store)."""
    rows, answers = cache.get(st, advertiser)
    low = st.settings.low_confidence
    counts = dict.fromkeys([*TYPES, "skipped", "low"], 0)
    out = []
    for row in rows:
        ans = answers.get(row.content_key) if row.content_key else None
        lowest = _lowest_score(ans) if ans is not None else None
        is_low = lowest is not None and lowest < low
        if ans is not None and ans.type:
            counts[ans.type] += 1
            counts["low"] += is_low
        if row.skipped:
            counts["skipped"] += 1
        if _matches(row, ans, filters, is_low):
            out.append((row, ans))
    return Inventory(out, counts, st.settings)


def _matches(row: Listed, ans: Answer | None, f: dict[str, Any], is_low: bool) -> bool:
    if f["skipped"] and not row.skipped:
        return False
    if f["vehicle"] and f["vehicle"].lower() not in (row.vehicle_id or "").lower():
        return False
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


class FixForm(BaseModel):
    csrf: str = Field(max_length=200)
    image_key: str = Field(min_length=3, max_length=66)
    type: str | None = Field(default=None, max_length=32)
    color: str | None = Field(default=None, max_length=32)  # "" = no color (placeholders)
    scope: Literal["advertiser", "global"] = "advertiser"
    comment: str | None = Field(default=None, max_length=2000)
    back: str = Field(default="", max_length=2000)


class DecisionForm(BaseModel):
    csrf: str = Field(max_length=200)
    action: Literal["accept", "reject", "relabel"]
    value: str | None = Field(default=None, max_length=32)
    back: str = Field(default="", max_length=2000)


class PromoteForm(BaseModel):
    csrf: str = Field(max_length=200)
    alias: Literal["champion", "challenger"] = "champion"
    reason: str | None = Field(default=None, max_length=2000)


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


# -- the image page -------------------------------------------------------------------------------


def _box_style(box: list[int] | None, width: int | None, height: int | None) -> str | None:
    """The crop box as CSS percentages of the picture (boxes are in the decoded image's pixels)."""
    if not box or not width or not height:
        return None
    x0, y0, x1, y1 = box
    return (
        f"left:{100 * x0 / width:.2f}%;top:{100 * y0 / height:.2f}%;"
        f"width:{100 * (x1 - x0) / width:.2f}%;height:{100 * (y1 - y0) / height:.2f}%"
    )


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
    v: Who,
    advertiser: FixFilter = None,
    since: FixFilter = None,
    until: FixFilter = None,
    actor: FixFilter = None,
    field: FixFilter = None,
) -> FixQuery:
    adv = Access.advertiser_view(v.who, advertiser or None)
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


# -- models ---------------------------------------------------------------------------------------


def _last_sweep(data_dir: Path) -> dict[str, Any] | None:
    found = sorted((data_dir / "sweeps").glob("*/comparison.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    try:
        sweep: dict[str, Any] = json.loads(found[-1].read_text())
    except (OSError, ValueError):
        return None
    sweep["has_plot"] = (found[-1].parent / "metrics.png").is_file()
    sweep["has_report"] = (found[-1].parent / "report.html").is_file()
    return sweep


def _watch(st: AppState, days: int) -> dict[str, Any]:
    from lotlens.train.monitor import watch

    w = watch(st.store, days=days)
    today = datetime.now(UTC).date()
    span = [today - timedelta(days=days - 1 - i) for i in range(days)]
    per_model: dict[str, dict[date, list[int]]] = {}
    per_pair: dict[tuple[str, str], dict[date, list[int]]] = {}
    for (day, adv, version), f in w.daily.items():
        for agg in (
            per_model.setdefault(version, {}).setdefault(day, [0, 0]),
            per_pair.setdefault((adv, version), {}).setdefault(day, [0, 0]),
        ):
            agg[0] += f.answers
            agg[1] += f.fixes

    def rate(n: int, fixes: int) -> float | None:
        return 1000.0 * fixes / n if n else None

    fix_rate = {
        v: [(d, r) for d, (n, x) in sorted(by_day.items()) if (r := rate(n, x)) is not None]
        for v, by_day in per_model.items()
    }
    answers = {v: [(d, float(n)) for d, (n, _x) in sorted(by_day.items())] for v, by_day in per_model.items()}
    pairs = []
    for (adv, version), by_day in sorted(per_pair.items()):
        n = sum(a for a, _ in by_day.values())
        fixes = sum(x for _, x in by_day.values())
        pairs.append(
            {
                "advertiser": adv,
                "model_version": version,
                "answers": n,
                "fixes": fixes,
                "fix_rate": rate(n, fixes),
                "spark": sparkline([rate(*by_day[d]) if d in by_day else None for d in span]),
            }
        )
    return {
        "flags": w.flags,
        "pairs": pairs,
        "fix_rate_chart": line_chart(fix_rate, span, title=f"fixes per 1,000 answers, last {days} days"),
        "answers_chart": line_chart(answers, span, title=f"answers per day, last {days} days"),
    }


# -- routes ---------------------------------------------------------------------------------------


def build_router() -> APIRouter:  # noqa: C901 -- one function so every route shares the dependencies above
    r = APIRouter(include_in_schema=False)

    @r.get("/", response_class=HTMLResponse)
    async def home(v: Who) -> Response:
        if v.staff:
            return see_other("/advertisers")
        if v.who.advertiser:
            return see_other(_inventory_url(v.who.advertiser))
        return see_other("/fixes")

    @r.get("/signin", response_class=HTMLResponse)
    async def signin_form(request: Request, next: str = "/") -> Response:
        token = request.cookies.get(SIGNIN_COOKIE) or new_token()
        page = render(request, None, "signin.html", next=_local_path(next), token=token, error=None)
        page.set_cookie(SIGNIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/signin")
        return page

    @r.post("/signin", response_class=HTMLResponse)
    async def signin(
        request: Request,
        s: Annotated[Sessions, Depends(sessions)],
        key: Annotated[str, Form(max_length=512)],
        csrf: Annotated[str, Form(max_length=200)],
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        token = request.cookies.get(SIGNIN_COOKIE, "")
        if not same_token(token, csrf):
            raise HTTPException(403, "the sign-in form is stale: reload it and try again")
        found = s.sign_in(key)
        if found is None:
            return render(
                request, None, "signin.html", 401, next=_local_path(next), token=token, error="Unknown API key."
            )
        page = see_other(_local_path(next))
        _set_session(request, page, found[1])
        page.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return page

    @r.post("/signout")
    async def signout(v: Who, csrf: Annotated[str, Form(max_length=200)]) -> Response:
        check_csrf(v, csrf)
        page = see_other("/signin")
        page.delete_cookie(COOKIE, path="/")
        return page

    @r.get("/advertisers", response_class=HTMLResponse)
    async def advertisers(request: Request, st: State, v: Who) -> Response:
        if not v.staff and v.who.advertiser:
            return see_other(_inventory_url(v.who.advertiser))
        Access.require_staff(v.who)
        rows = await asyncio.to_thread(st.store.advertisers)
        return render(request, v, "advertisers.html", rows=rows)

    @r.get("/advertisers/{advertiser:path}", response_class=HTMLResponse)
    async def advertiser_page(
        request: Request,
        advertiser: str,
        st: State,
        v: Who,
        type: Annotated[Literal["Dealer", "Stock", "Placeholder", ""], Query()] = "",
        color: Annotated[str, Query(max_length=32)] = "",
        source: Annotated[Literal["model", "cache", "manual", ""], Query()] = "",
        low: bool = False,
        skipped: bool = False,
        vehicle: Annotated[str, Query(max_length=128)] = "",
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        updated: Annotated[str, Query(max_length=66)] = "",
    ) -> Response:
        Access.advertiser_view(v.who, advertiser)
        if color and color != "none" and color not in COLORS:
            raise HTTPException(422, f"color must be one of {', '.join(COLORS)} or none")
        filters = {"type": type, "color": color, "source": source, "low": low, "skipped": skipped, "vehicle": vehicle}
        inv = await asyncio.to_thread(inventory, st, advertiser, filters, request.app.state.lotlens_listings)
        size = st.settings.page_size
        pages = max(1, math.ceil(inv.total / size))
        page = min(page, pages)
        active = {k: ("1" if val is True else val) for k, val in filters.items() if val}
        just = None
        if updated:
            ans = (await asyncio.to_thread(st.store.answers, [updated], advertiser)).get(updated)
            history = await asyncio.to_thread(st.access.fix_history, v.who, advertiser, content_key=updated)
            if ans is not None:
                just = {"answer": ans, "history": history[-4:][::-1]}
        return render(
            request,
            v,
            "advertiser.html",
            advertiser=advertiser,
            inv=inv,
            cards=await asyncio.to_thread(inv.cards, (page - 1) * size, page * size),
            page=page,
            pages=pages,
            filters=filters,
            query=urlencode(active),
            page_query=lambda n: urlencode({**active, "page": n}),
            just=just,
            updated=updated,
            low=st.settings.low_confidence,
        )

    @r.post("/advertisers/{advertiser:path}/fix")
    async def fix(advertiser: str, st: State, v: Who, form: Annotated[FixForm, Form()]) -> Response:
        check_csrf(v, form.csrf)
        back = f"{_inventory_url(advertiser)}?{_filters_from(form.back)}".rstrip("?")
        _, current = await asyncio.to_thread(st.access.answer, v.who, form.image_key, advertiser)
        changes = _fix_changes(current, form)
        if not changes:
            return see_other(back, done="unchanged", updated=form.image_key)
        fix = FixRequest(form.image_key, changes, advertiser, form.scope, form.comment or None)
        await asyncio.to_thread(st.access.record_fix, v.who, fix)
        return see_other(back, updated=form.image_key)

    @r.get("/images/{image_key}", response_class=HTMLResponse)
    async def image_page(
        request: Request,
        image_key: str,
        st: State,
        v: Who,
        advertiser: Annotated[str | None, Query(max_length=128)] = None,
    ) -> Response:
        def load() -> dict[str, Any]:
            adv, ans = st.access.answer(v.who, image_key, advertiser)
            info = st.store.image_info(image_key)
            if info is None:
                raise NotFound(f"unknown image {image_key!r}", "unknown_image")
            preds = st.store.predictions(image_key)
            box = next((p.box for p in reversed(preds) if p.box), None)
            seen = st.store.sightings_of(image_key, None if v.staff else v.who.advertiser)
            urls = {s.url for s in seen}
            hkeys = [h for h in st.store.header_keys_of(image_key) if v.staff or h.url in urls]
            return {
                "advertiser": adv,
                "answer": ans,
                "info": info,
                "predictions": preds[::-1],
                "box": _box_style(box, info.width, info.height),
                "sightings": seen,
                "header_keys": hkeys,
                "history": st.access.fix_history(v.who, adv, content_key=image_key)[::-1],
                "picture": _kept_thumb(st.settings, image_key, 640, adv) or (web_url(seen[0].url) if seen else None),
            }

        data = await asyncio.to_thread(load)
        return render(request, v, "image.html", image_key=image_key, **data)

    @r.get("/images/{image_key}/thumb")
    async def thumb(
        image_key: str,
        st: State,
        v: Who,
        side: int = 320,
        advertiser: Annotated[str | None, Query(max_length=128)] = None,
    ) -> Response:
        await asyncio.to_thread(st.access.image_view, v.who, image_key, advertiser)
        if side not in THUMB_SIDES:
            raise HTTPException(422, f"side must be one of {THUMB_SIDES}")
        if not st.settings.keep_images:
            raise HTTPException(404, "image bytes are not kept (keep_images is off)")
        data = await asyncio.to_thread(ImageFolder(st.settings.data_dir).get, image_key)
        if data is None:
            raise HTTPException(404, "the image's bytes are not kept")
        try:
            jpeg = await asyncio.to_thread(thumbnail_jpeg, data, side, max_pixels=st.settings.max_pixels)
        except ImageDecodeError as exc:
            raise HTTPException(422, f"the kept image cannot be decoded: {exc.reason}") from exc
        # content-addressed: the bytes behind a key never change
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=604800, immutable"})

    @r.get("/fixes", response_class=HTMLResponse)
    async def fixes_page(
        request: Request,
        st: State,
        v: Who,
        f: Annotated[FixQuery, Depends(fix_query)],
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    ) -> Response:
        rows = (await asyncio.to_thread(lambda: st.access.fix_history(v.who, **f.store_args)))[::-1]  # newest first
        size = 200
        pages = max(1, math.ceil(len(rows) / size))
        page = min(page, pages)
        return render(
            request,
            v,
            "fixes.html",
            rows=rows[(page - 1) * size : page * size],
            total=len(rows),
            page=page,
            pages=pages,
            form=f.form,
            query=urlencode(f.given),
            page_query=lambda n: urlencode({**f.given, "page": n}),
        )

    @r.get("/fixes.csv")
    async def fixes_csv(st: State, v: Who, f: Annotated[FixQuery, Depends(fix_query)]) -> Response:
        rows = await asyncio.to_thread(lambda: st.access.fix_history(v.who, **f.store_args))
        name = f"lotlens-fixes-{datetime.now(UTC):%Y%m%d-%H%M}.csv"
        return StreamingResponse(
            _csv_rows(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @r.get("/review", response_class=HTMLResponse)
    async def review_page(
        request: Request,
        st: State,
        v: Who,
        dataset: Annotated[str | None, Query(max_length=64)] = None,
        status: Annotated[Literal["pending", "accepted", "rejected", "relabelled", ""], Query()] = "pending",
        error: Annotated[str, Query(max_length=16)] = "",
    ) -> Response:
        Access.require_staff(v.who)
        everything = await asyncio.to_thread(ReviewQueue(st.store).items, dataset or None, status or None)
        items = everything[:REVIEW_PAGE]  # the most urgent first; deciding them brings up the next
        datasets = await asyncio.to_thread(ReviewQueue(st.store).datasets)
        thumbs = {i.content_key: _kept_thumb(st.settings, i.content_key, 160) for i in items}
        return render(
            request,
            v,
            "review.html",
            items=items,
            total=len(everything),
            thumbs=thumbs,
            datasets=datasets,
            dataset=dataset or "",
            status=status,
            error="A conflict has several labels: relabel it with the right one, or reject it."
            if error == "conflict"
            else "",
        )

    @r.post("/review/{item_id}")
    async def review_decide(item_id: int, st: State, v: Who, form: Annotated[DecisionForm, Form()]) -> Response:
        check_csrf(v, form.csrf)
        Access.require_staff(v.who)
        back = "/review?" + urlencode([(k, val) for k, val in parse_qsl(form.back) if k in ("dataset", "status")])
        try:
            rec = await asyncio.to_thread(ReviewQueue(st.store).decide, item_id, form.action, v.who.name, form.value)
        except InvalidInput as exc:
            if exc.code == "conflict_labels":
                return see_other(back, error="conflict")
            raise
        return see_other(back, done=rec.status)

    @r.get("/models", response_class=HTMLResponse)
    async def models_page(
        request: Request, st: State, v: Who, days: Annotated[int, Query(ge=2, le=90)] = 14
    ) -> Response:
        Access.require_staff(v.who)

        def load() -> dict[str, Any]:
            return {
                "serving": st.champion().version,
                "aliases": st.registry.aliases(),
                "models": st.registry.models()[::-1],
                "promotions": st.registry.history()[::-1],
                "sweep": _last_sweep(st.settings.data_dir),
                "watch": _watch(st, days),
                "days": days,
            }

        return render(request, v, "models.html", **(await asyncio.to_thread(load)))

    @r.get("/models/sweeps/{sweep_id}/{name}")
    async def sweep_file(sweep_id: str, name: Literal["report.html", "metrics.png"], st: State, v: Who) -> Response:
        Access.require_staff(v.who)
        root = (st.settings.data_dir / "sweeps").resolve()
        path = (root / sweep_id / name).resolve()
        if path.parent.parent != root or not path.is_file():
            raise HTTPException(404, "no such sweep report")
        return FileResponse(path)

    @r.post("/models/{version}/promote")
    async def promote(version: str, st: State, v: Who, form: Annotated[PromoteForm, Form()]) -> Response:
        check_csrf(v, form.csrf)
        Access.require_admin(v.who, "promotes models")
        await asyncio.to_thread(
            st.registry.promote, version, actor=v.who.name, reason=form.reason or None, alias=form.alias
        )
        return see_other("/models", done="promoted")

    @r.post("/models/rollback")
    async def rollback(st: State, v: Who, form: Annotated[PromoteForm, Form()]) -> Response:
        check_csrf(v, form.csrf)
        Access.require_admin(v.who, "rolls back models")
        await asyncio.to_thread(st.registry.rollback, actor=v.who.name, reason=form.reason or None, alias=form.alias)
        return see_other("/models", done="rolled_back")

    return r


# -- mounting -------------------------------------------------------------------------------------

SECURITY_HEADERS = {
    # thumbnails may come straight from a dealer's CDN when the bytes are not kept
    "Content-Security-Policy": "default-src 'self'; img-src 'self' https: http: data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


# The pages' own table: domain error -> the status of the error page.
PAGE_STATUS: dict[type[LotlensError], int] = {NotFound: 404, PermissionDenied: 403, Conflict: 409, InvalidInput: 422}


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(("/v1/", "/docs", "/openapi", "/metrics", "/healthz", "/readyz"))


def add_pages(app: FastAPI) -> None:
    """Mount the review pages, their static files and HTML error pages on the API's app."""

    @app.middleware("http")
    async def page_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if _is_page(request):
            for k, val in SECURITY_HEADERS.items():
                response.headers.setdefault(k, val)
            if response.headers.get("content-type", "").startswith("text/html"):
                response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(SignInRequired)
    async def to_signin(request: Request, exc: SignInRequired) -> Response:
        return see_other("/signin", next=exc.next_url)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not _is_page(request):
            return await api_http_error(request, exc)
        if request.url.path.endswith(".csv"):
            return await http_exception_handler(request, exc)
        v = sessions(request).viewer(request.cookies.get(COOKIE))
        return render(request, v, "error.html", exc.status_code, status=exc.status_code, detail=exc.detail)

    @app.exception_handler(LotlensError)
    async def domain_page(request: Request, exc: LotlensError) -> Response:
        if not _is_page(request):
            return await domain_error(request, exc)
        status = next((code for kind, code in PAGE_STATUS.items() if isinstance(exc, kind)), 500)
        v = sessions(request).viewer(request.cookies.get(COOKIE))
        return render(
            request, v, "error.html", status, status=status, detail=str(exc) if status < 500 else "internal error"
        )

    @app.exception_handler(DBAPIError)
    async def store_page(request: Request, exc: DBAPIError) -> Response:
        if not _is_page(request):
            return await store_error(request, exc)
        page = render(
            request,
            None,
            "error.html",
            503,
            status=503,
            detail="The database is not answering. Nothing was lost: reload the page in a few seconds.",
        )
        page.headers["Retry-After"] = str(STORE_RETRY_SECONDS)
        return page

    @app.exception_handler(RequestValidationError)
    async def form_error(request: Request, exc: RequestValidationError) -> Response:
        if not _is_page(request):
            return await validation_error(request, exc)
        v = sessions(request).viewer(request.cookies.get(COOKIE))
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return render(request, v, "error.html", 422, status=422, detail=detail)

    app.mount("/static", StaticFiles(directory=str(resources.files("lotlens.web") / "static")), name="static")
    app.include_router(build_router())
