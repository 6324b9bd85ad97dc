"""Keyset paging for the list endpoints: `limit` rows a page and an opaque `cursor`.

A cursor is the sort key of the last row of a page, with the list it belongs to, as URL-safe
base64 of a small JSON array (`["fixes", "2026-12-03T07:10:01+00:00", 42]`). It holds no secret
and grants nothing: the next page is read with the caller's own filters and rights. Anything that
does not decode to that shape and those types is a 422 problem with code `bad_cursor`. The store
reads `limit + 1` rows after the key in SQL; the extra row only says whether there is a next page.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query

from lotlens.api.problems import ApiError

T = TypeVar("T")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_CURSOR = 512
MAX_INT = 2**63 - 1

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page (1 to 1000)")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page; leave out for the first page")]


def encode(kind: str, key: Sequence[Any]) -> str:
    values = [v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps([kind, *values], separators=(",", ":"), allow_nan=False).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _bad(why: str) -> ApiError:
    return ApiError(422, "bad_cursor", f"not a cursor of this list ({why}); start again without a cursor")


def _value(kind: type, v: Any) -> Any:
    if kind is datetime:
        if not isinstance(v, str) or len(v) > 40:
            raise _bad("a time is not a string")
        try:
            t = datetime.fromisoformat(v)
        except ValueError as exc:
            raise _bad("a time does not parse") from exc
        if t.tzinfo is None:
            raise _bad("a time has no zone")
        return t.astimezone(UTC)
    if kind is int:
        if type(v) is not int or not 0 <= v <= MAX_INT:
            raise _bad("an id is not a whole number in range")
        return v
    if kind is float:
        if type(v) not in (int, float) or not math.isfinite(v):
            raise _bad("a score is not a finite number")
        return float(v)
    if type(v) is not str or len(v) > 256:
        raise _bad("a name is not a short string")
    return v


def decode(cursor: str | None, kind: str, types: Sequence[type]) -> Any:
    """The sort key a cursor holds (None without one), checked against the list's key types.

    Raises:
        ApiError: 422 `bad_cursor`.
    """
    if cursor is None:
        return None
    if len(cursor) > MAX_CURSOR:
        raise _bad("too long")
    try:
        raw = base64.b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        payload = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        raise _bad("not base64 of JSON") from exc
    if not isinstance(payload, list) or len(payload) != len(types) + 1 or payload[0] != kind:
        raise _bad("wrong shape")
    return tuple(_value(t, v) for t, v in zip(types, payload[1:], strict=True))


def page(rows: list[T], limit: int, kind: str, key: Callable[[T], Sequence[Any]]) -> tuple[list[T], str | None]:
    """The page out of the `limit + 1` rows the store read, and the cursor of the next (None: last)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode(kind, key(rows[-1]))
