"""SQLAlchemy tables of the store. Request/response schemas live elsewhere (pydantic)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A time zone-aware timestamp on every database: SQLite keeps no zone, so what it hands back
    is read as UTC (every time lotlens writes is UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


KEY = 66  # "c:" / "h:" + 64 hex digits


class Base(DeclarativeBase):
    pass


class Image(Base):
    """One row per distinct image content (content key = sha256 of the bytes)."""

    __tablename__ = "images"
    content_key: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    phash: Mapped[int | None] = mapped_column(BigInteger, index=True)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class HeaderKey(Base):
    """What a header key (normalised URL + strong validators) was last seen to serve."""

    __tablename__ = "header_keys"
    header_key: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    content_key: Mapped[str] = mapped_column(ForeignKey("images.content_key"), index=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    url: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class Sighting(Base):
    """An advertiser's image at a URL: the inventory the review pages and reclassify walk."""

    __tablename__ = "sightings"
    __table_args__ = (Index("ix_sightings_advertiser_last_seen", "advertiser", "last_seen"),)
    advertiser: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(Text, primary_key=True)
    content_key: Mapped[str] = mapped_column(ForeignKey("images.content_key"), index=True)
    vehicle_id: Mapped[str | None] = mapped_column(String(128))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str | None] = mapped_column(String(8))  # how the latest scrape was answered: model|cache|manual


class Skip(Base):
    """An advertiser's URL that could not be answered on its latest scrape, and why; gone once it is."""

    __tablename__ = "skips"
    advertiser: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(String(64))
    vehicle_id: Mapped[str | None] = mapped_column(String(128))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class Prediction(Base):
    """A model's answer for an image; one per (image, model version)."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("content_key", "model_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    content_key: Mapped[str] = mapped_column(ForeignKey("images.content_key"), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    color: Mapped[str | None] = mapped_column(String(16))
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    box: Mapped[list[int] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Fix(Base):
    """A manual fix of one field. Append-only: the migration adds triggers that refuse UPDATE/DELETE."""

    __tablename__ = "fixes"
    __table_args__ = (Index("ix_fixes_advertiser_created", "advertiser", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    content_key: Mapped[str] = mapped_column(ForeignKey("images.content_key"), index=True)
    advertiser: Mapped[str | None] = mapped_column(String(128))
    field: Mapped[str] = mapped_column(String(8))
    old_value: Mapped[str | None] = mapped_column(String(16))
    new_value: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    model_version: Mapped[str | None] = mapped_column(String(64))  # of the answer the fix corrected
    # "Looks right": the same value as the answer, recorded as a confirmed label, not a correction
    confirmation: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Url(Base):
    """The URL index: what a normalised URL served last, with the validators a conditional GET sends."""

    __tablename__ = "urls"
    __table_args__ = {"sqlite_with_rowid": False}  # rows kept in key order: one B-tree search a lookup
    url_key: Mapped[str] = mapped_column(String(KEY), primary_key=True)  # "u:" + sha256 of the normalised URL
    url: Mapped[str] = mapped_column(Text)
    host: Mapped[str] = mapped_column(String(255), index=True)
    content_key: Mapped[str] = mapped_column(ForeignKey("images.content_key"), index=True)
    header_key: Mapped[str | None] = mapped_column(String(KEY))
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(String(64))
    checks: Mapped[int] = mapped_column(Integer, default=0)  # times the URL was found serving the same bytes
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_checked: Mapped[datetime] = mapped_column(UTCDateTime())


class Host(Base):
    """What a CDN host has earned: trust in its headers (header keys, 304s), and trust in its URLs
    alone (content-addressed: bytes never changed under a URL over `url_checks` checks)."""

    __tablename__ = "hosts"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    trusted: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    url_checks: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # same bytes seen
    url_changes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # bytes changed under a known URL
    url_trusted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # None: every answer needs a request


class ModelRow(Base):
    """A registered model: a model folder copied into the registry, with its evaluation metrics."""

    __tablename__ = "models"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset: Mapped[str | None] = mapped_column(String(64))
    registered_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Alias(Base):
    """`champion` serves; `challenger` is watched beside it."""

    __tablename__ = "model_aliases"
    alias: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[str] = mapped_column(ForeignKey("models.version"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Promotion(Base):
    """Every change of an alias: who, when, why, and the metrics it was judged on (append-only)."""

    __tablename__ = "promotions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alias: Mapped[str] = mapped_column(String(32), index=True)
    from_version: Mapped[str | None] = mapped_column(String(64))
    to_version: Mapped[str] = mapped_column(ForeignKey("models.version"))
    action: Mapped[str] = mapped_column(String(16))  # promote | rollback
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReviewItem(Base):
    """A dataset candidate held for a person: a label conflict, or a label the model strongly doubts."""

    __tablename__ = "review_items"
    __table_args__ = (UniqueConstraint("dataset", "content_key", "field"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    content_key: Mapped[str] = mapped_column(ForeignKey("images.content_key"), index=True)
    field: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))  # conflict | doubt
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{"value", "advertiser", "fix_id", ...}]
    model_value: Mapped[str | None] = mapped_column(String(16))
    score: Mapped[float] = mapped_column()  # higher: more likely the label is wrong
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|accepted|rejected|relabelled
    decided_value: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ServedImage(Base):
    """An image answered to an advertiser on a day, once however often it was asked that day (from
    the model or the cache), with the last answer's model version, type and source: the watch
    figures' base. One row per image, advertiser and day; `lotlens images prune` drops old days."""

    __tablename__ = "served_images"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    advertiser: Mapped[str] = mapped_column(String(128), primary_key=True)
    content_key: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8))


class IdempotencyKey(Base):
    """A request made with an `Idempotency-Key`: its retries within 24 h replay it, never repeat it."""

    __tablename__ = "idempotency_keys"
    owner: Mapped[str] = mapped_column(String(128), primary_key=True)  # the API key's name and the endpoint
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    fix_ids: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Job(Base):
    """A large batch run in chunks; its counters move as chunks finish (`lotlens.store.jobs`)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_advertiser_id", "advertiser", "id"),
        UniqueConstraint("owner", "idempotency_key"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # sorts by creation time
    advertiser: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(128), index=True)  # the API key (name) that created it
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|done|failed|cancelled
    total: Mapped[int] = mapped_column(Integer)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_id: Mapped[str | None] = mapped_column(String(64))
    webhook_status: Mapped[str | None] = mapped_column(String(16))  # pending|delivered|failed
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_last: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"at", "status_code", "error"}
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobItem(Base):
    """One input image of a job at its index, and its answer once its chunk is done."""

    __tablename__ = "job_items"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    vehicle_id: Mapped[str | None] = mapped_column(String(128))
    color: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the /v1/classify answer object


class JobChunk(Base):
    """A slice [start, stop) of a job's items, run as one unit; redone whole after a lost worker."""

    __tablename__ = "job_chunks"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer)
    stop: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # pending|running|done|cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class HostLease(Base):
    """A download slot on a host, held by one fetch anywhere in the fleet until it ends or expires."""

    __tablename__ = "host_leases"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
