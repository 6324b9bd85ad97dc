"""The review pages on the API's app: security headers, HTML error pages, and one router per page
module (`signin`, `inventory`, `vehicles`, `images`, `history`, `review`, `models`; `common` holds what they share).

Every rule about who may see or change what is `lotlens.access`, called with the signed-in viewer;
every form carries the session's CSRF token and answers with a redirect (POST, then GET), so a
reload never repeats a fix.
"""

from __future__ import annotations

import asyncio
import gzip
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lotlens.api import STORE_RETRY_SECONDS
from lotlens.api.problems import domain_error, store_error, validation_error
from lotlens.api.problems import http_error as api_http_error
from lotlens.errors import Conflict, InvalidInput, LotlensError, NotFound, PermissionDenied, StorageError
from lotlens.web import advertisers, bulk, history, images, inventory, models, review, signin, vehicles
from lotlens.web.common import SignInRequired, render, see_other, sessions
from lotlens.web.session import COOKIE

SECURITY_HEADERS = {
    # thumbnails may come straight from a dealer's CDN when the bytes are not kept
    "Content-Security-Policy": "default-src 'self'; img-src 'self' https: http: data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


# The pages' own table: domain error -> the status of the error page.
PAGE_STATUS: dict[type[LotlensError], int] = {
    NotFound: 404,
    PermissionDenied: 403,
    Conflict: 409,
    InvalidInput: 422,
    StorageError: 503,
}


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(("/v1/", "/docs", "/openapi", "/metrics", "/healthz", "/readyz"))


GZIP_MIN_BYTES = 512  # smaller pages gain little


async def _gzipped(response: Response) -> Response:
    """An HTML page compressed (a 100-card inventory is about 20 times smaller); its headers,
    cookies included, kept. Compressing runs in a thread, off the event loop."""
    body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
    headers = [(k, v) for k, v in response.raw_headers if k.lower() != b"content-length"]
    if len(body) < GZIP_MIN_BYTES:
        out = Response(body, status_code=response.status_code)
    else:
        out = Response(await asyncio.to_thread(gzip.compress, body, 6), status_code=response.status_code)
        headers += [(b"content-encoding", b"gzip")]
    out.raw_headers = [*headers, (b"vary", b"Accept-Encoding"), (b"content-length", str(len(out.body)).encode())]
    return out


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
                if "gzip" in request.headers.get("accept-encoding", "") and "content-encoding" not in response.headers:
                    return await _gzipped(response)
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
        viewer = sessions(request).viewer(request.cookies.get(COOKIE))
        return render(request, viewer, "error.html", exc.status_code, status=exc.status_code, detail=exc.detail)

    @app.exception_handler(LotlensError)
    async def domain_page(request: Request, exc: LotlensError) -> Response:
        if not _is_page(request):
            return await domain_error(request, exc)
        status = next((code for kind, code in PAGE_STATUS.items() if isinstance(exc, kind)), 500)
        viewer = sessions(request).viewer(request.cookies.get(COOKIE))
        return render(
            request, viewer, "error.html", status, status=status, detail=str(exc) if status < 500 else "internal error"
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
        viewer = sessions(request).viewer(request.cookies.get(COOKIE))
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return render(request, viewer, "error.html", 422, status=422, detail=detail)

    app.mount("/static", StaticFiles(directory=str(resources.files("lotlens.web") / "static")), name="static")
    for module in (
        signin,
        advertisers,
        vehicles,
        bulk,
        inventory,
        images,
        history,
        review,
        models,
    ):  # vehicles before inventory's catch-all path
        app.include_router(module.router)
