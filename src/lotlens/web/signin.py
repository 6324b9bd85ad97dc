"""Sign-in and sign-out with an API key, and the front page that sends each role where it works."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from lotlens.api.throttle import AuthThrottle, client_address
from lotlens.web.common import Who, _local_path, _set_session, check_csrf, render, see_other, sessions
from lotlens.web.inventory import _inventory_url
from lotlens.web.session import COOKIE, SIGNIN_COOKIE, Sessions, new_token, same_token

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def home(viewer: Who) -> Response:
    if viewer.staff:
        return see_other("/advertisers")
    if viewer.who.advertiser:
        return see_other(_inventory_url(viewer.who.advertiser))
    return see_other("/fixes")


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request, next: str = "/") -> Response:
    token = request.cookies.get(SIGNIN_COOKIE) or new_token()
    page = render(request, None, "signin.html", next=_local_path(next), token=token, error=None)
    page.set_cookie(SIGNIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/signin")
    return page


@router.post("/signin", response_class=HTMLResponse)
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
    throttle: AuthThrottle = request.app.state.auth_throttle
    address = client_address(request.scope.get("client"))
    wait = throttle.retry_after(address)
    if wait:
        minutes = math.ceil(wait / 60)
        error = f"Too many unknown keys from your address: try again in {minutes} minute{'' if minutes == 1 else 's'}."
        refused = render(request, None, "signin.html", 429, next=_local_path(next), token=token, error=error)
        refused.headers["Retry-After"] = str(math.ceil(wait))
        return refused
    found = s.sign_in(key)
    if found is None:
        throttle.failed(address)
        return render(request, None, "signin.html", 401, next=_local_path(next), token=token, error="Unknown API key.")
    page = see_other(_local_path(next))
    _set_session(request, page, found[1])
    page.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return page


@router.post("/signout")
async def signout(viewer: Who, csrf: Annotated[str, Form(max_length=200)]) -> Response:
    check_csrf(viewer, csrf)
    page = see_other("/signin")
    page.delete_cookie(COOKIE, path="/")
    return page
