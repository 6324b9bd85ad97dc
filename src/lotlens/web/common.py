"""What every page shares: templates, the signed-in viewer, CSRF, redirects, form parsing."""

from __future__ import annotations

from datetime import UTC, date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from lotlens.access import LOCAL_ADMIN
from lotlens.api import AppState, state
from lotlens.labels import COLORS, PLACEHOLDER, TYPES
from lotlens.web.session import COOKIE, Sessions, Viewer, same_token

SOURCES = ("model", "cache", "manual")
FILTERS = ("type", "color", "source", "low", "skipped", "vehicle", "q", "sort", "per", "page")
THUMB_SIDES = (160, 320, 640)
REVIEW_PAGE = 200
NOTICES = {
    "unchanged": ("info", "Nothing changed: the form held the current answer."),
    "accepted": ("ok", "Accepted."),
    "rejected": ("ok", "Rejected: it stays out of the next dataset."),
    "relabelled": ("ok", "Relabelled."),
    "reopened": ("ok", "Undone: the item is back in the queue."),
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
    env.filters["pct0"] = lambda v: "–" if v is None else f"{100 * float(v):.0f}%"
    env.filters["day"] = lambda t: "" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d")
    env.filters["when"] = lambda t: "" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    env.filters["web_url"] = web_url
    env.filters["short"] = lambda k: (k or "")[:14]
    env.globals.update(TYPES=TYPES, COLORS=COLORS, SOURCES=SOURCES, PLACEHOLDER=PLACEHOLDER)
    return Jinja2Templates(env=env)


TEMPLATES = _templates()


def card_macro(card: Any, advertiser: str, v: Viewer, back: str, low: float) -> Markup:
    """One inventory card as the page draws it, for answers that swap a card in place."""
    macros = TEMPLATES.env.get_template("_macros.html").module
    out: Markup = macros.card(card, advertiser, v, Markup(_csrf_input(v)), back, low)  # type: ignore[attr-defined]
    return out


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
