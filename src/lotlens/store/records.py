"""The store's answers to callers: frozen records, never ORM objects (they outlive the session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from lotlens.store.tables import Fix


@dataclass(frozen=True)
class FixRecord:
    """One row of the fix history."""

    id: int
    content_key: str
    advertiser: str | None
    field: str
    old_value: str | None
    new_value: str | None
    actor: str
    role: str
    scope: str
    comment: str | None
    created_at: datetime
    model_version: str | None = None
    confirmation: bool = False  # a "Looks right": same value, a confirmed label rather than a correction


@dataclass(frozen=True)
class Answer:
    """The resolved answer for one image as one advertiser sees it."""

    content_key: str
    type: str | None
    color: str | None
    scores: dict[str, Any] = field(default_factory=dict)
    box: list[int] | None = None
    model_version: str | None = None
    manual: tuple[str, ...] = ()  # the fields that come from fixes

    @property
    def source(self) -> str:
        return "manual" if self.manual else "model"

    @property
    def color_scores(self) -> dict[str, float]:
        """The color's scores; a fixed color counts as certain (what the vehicle vote reads)."""
        if "color" in self.manual:
            return {self.color: 1.0} if self.color else {}
        scores: dict[str, float] = self.scores.get("color", {}) or {}
        return scores


@dataclass(frozen=True)
class Listed:
    """One URL of an advertiser's inventory: what it showed, and how its latest scrape went."""

    url: str
    content_key: str | None  # None: never answered (skipped from the start)
    vehicle_id: str | None
    first_seen: datetime
    last_seen: datetime
    source: str | None  # model | cache | manual, on the latest answered scrape
    skipped: str | None = None  # the reason, when the latest scrape of this URL was skipped


@dataclass(frozen=True)
class ImageInfo:
    content_key: str
    width: int | None  # of the decoded image the models saw (prediction boxes use these pixels)
    height: int | None
    size_bytes: int | None
    phash: int | None
    first_seen: datetime


@dataclass(frozen=True)
class PredictionRecord:
    model_version: str
    type: str
    color: str | None
    scores: dict[str, Any]
    box: list[int] | None
    created_at: datetime


@dataclass(frozen=True)
class SightingRecord:
    advertiser: str
    url: str
    vehicle_id: str | None
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class HeaderKeyRecord:
    header_key: str
    url: str
    host: str
    first_seen: datetime
    last_seen: datetime


def fix_record(f: Fix) -> FixRecord:
    return FixRecord(
        f.id,
        f.content_key,
        f.advertiser,
        f.field,
        f.old_value,
        f.new_value,
        f.actor,
        f.role,
        f.scope,
        f.comment,
        f.created_at,
        f.model_version,
        bool(f.confirmation),
    )


class UrlRecord(NamedTuple):
    """What the URL index holds for one normalised URL: its last bytes and the validators it came with
    (a named tuple: a batch of 1,000 lookups makes 1,000 of them)."""

    url: str
    content_key: str
    header_key: str | None
    etag: str | None
    last_modified: str | None
    checks: int


@dataclass(frozen=True)
class HostTrust:
    """What a host has earned: its headers are believed (header keys, 304s); its URLs alone are."""

    headers: bool = True
    urls: bool = False


@dataclass(frozen=True)
class UrlSeen:
    """One URL's outcome in a batch, for `learn_urls`.

    `before` is what the index held when the batch read it (None: a new URL). `fetched` is True when
    bytes came (a 200), False for a 304 (the validators still match the bytes in `before`).
    """

    url: str
    host: str
    content_key: str
    before: UrlRecord | None
    fetched: bool
    header_key: str | None = None
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class HostLessons:
    """What one `learn_urls` call changed about hosts (for the logs and metrics)."""

    headers_distrusted: list[tuple[str, str]] = field(default_factory=list)  # (host, why)
    url_trust_earned: list[str] = field(default_factory=list)
    url_trust_lost: list[str] = field(default_factory=list)
