"""Errors as RFC 9457 problem details (`application/problem+json`), each with a stable `code`.

One table turns every error the API meets into a status and a code: `HTTPException`s raised by
the routes, request validation, database errors (bad input such as a NUL character is 422; a
database that does not answer is 503 with `Retry-After`), and the domain errors of `lotlens.errors`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lotlens.errors import Conflict, InvalidInput, LotlensError, NotFound, PermissionDenied, StorageError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
STORE_RETRY_SECONDS = 5

# status -> the code an error without its own code gets
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "store_unavailable",
}

# domain error -> (status, code)
DOMAIN = {
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    InvalidInput: (422, "invalid_request"),
    PermissionDenied: (403, "forbidden"),
    StorageError: (503, "storage_unavailable"),  # the storage root (LOTLENS_STORAGE_URL) did not answer
}


class ApiError(HTTPException):
    """An HTTP error with its own stable problem code (`unknown_image`, `idempotency_conflict`, ...)."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail, headers)
        self.code = code


def problem(status: int, code: str, detail: Any, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": CODES.get(status, code).replace("_", " "), "status": status}
    body |= {"code": code, "detail": detail} | extra
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # FastAPI's own, routing's 404 and 405
    code = getattr(exc, "code", None) or CODES.get(exc.status_code, f"http_{exc.status_code}")
    return problem(exc.status_code, code, exc.detail, dict(exc.headers or {}))


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return problem(422, "invalid_request", detail, errors=errors)


async def store_error(request: Request, exc: Exception) -> JSONResponse:
    """Bad input the database refused (a NUL character, a number out of range) is the caller's 422;
    any other database error means it is not answering: 503 with Retry-After. Nothing was
    half-written, since every store call is one transaction."""
    if isinstance(exc, DataError):
        return problem(422, "invalid_input", "the database refused a value of this request (bad characters or range)")
    log.warning("store error on %s: %s", request.url.path, type(exc).__name__)
    return problem(
        503,
        "store_unavailable",
        "the store is not answering; retry shortly",
        {"Retry-After": str(STORE_RETRY_SECONDS)},
    )


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, (status, code) in DOMAIN.items():
        if isinstance(exc, kind):
            return problem(status, getattr(exc, "code", None) or code, str(exc))
    log.error("unmapped domain error on %s", request.url.path, exc_info=exc)
    return problem(500, "internal_error", "internal error")


HANDLERS = {
    StarletteHTTPException: http_error,
    RequestValidationError: validation_error,
    DBAPIError: store_error,
    LotlensError: domain_error,
}
