"""The cache and fix repository over SQLAlchemy: one `Store` per database, sessions per call.

Answers resolve per advertiser: that advertiser's latest fix of a field, else the latest global
(staff) fix, else the newest prediction. Predictions and fixes live in separate rows, so a
prediction that finishes after a fix can never overwrite it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lotlens.errors import Conflict, InvalidInput, NotFound
from lotlens.labels import COLORS, PLACEHOLDER, TYPES, normalise_color
from lotlens.store.tables import (
    AnswerCount,
    Fix,
    HeaderKey,
    Host,
    IdempotencyKey,
    Image,
    Prediction,
    Sighting,
    Skip,
)

FIELDS = ("type", "color")
IDEMPOTENCY_HOURS = 24
SCOPES = ("advertiser", "global")
CHUNK = 5000  # keys per IN (...): PostgreSQL takes at most 65,535 bind parameters a statement


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(keys), CHUNK):
        yield keys[i : i + CHUNK]


def now() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout for concurrent writers."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to `revision` (the `lotlens db upgrade` step)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("lotlens.store") / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


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


def check_fix(changes: dict[str, str | None], scope: str, advertiser: str | None) -> dict[str, str | None]:
    """The canonical values of a fix, or `InvalidInput` naming the first bad one (nothing is written)."""
    if not changes:
        raise InvalidInput("a fix needs a type or a color", "empty_fix")
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {SCOPES}")
    if scope == "advertiser" and not advertiser:
        raise InvalidInput("an advertiser-scope fix needs an advertiser")
    out: dict[str, str | None] = {}
    for name, value in changes.items():
        if name not in FIELDS:
            raise InvalidInput(f"field must be one of {FIELDS}")
        if name == "type":
            if value not in TYPES:
                raise InvalidInput(f"type must be one of {', '.join(TYPES)}", "unknown_type")
            out[name] = value
        else:
            try:
                out[name] = normalise_color(value)
            except ValueError as exc:
                raise InvalidInput(str(exc), "unknown_color") from exc
    return out


def _fix_record(f: Fix) -> FixRecord:
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
    )


class Store:
    """Repository over one database. Thread-safe: every method opens its own session."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, migrate: bool = True) -> Store:
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(table)

    # -- images and keys -------------------------------------------------------------------------

    def put_image(
        self,
        content_key: str,
        phash: int | None = None,
        width: int | None = None,
        height: int | None = None,
        size_bytes: int | None = None,
    ) -> None:
        """Record an image's content once (later calls with the same key change nothing)."""
        with self._session.begin() as s:
            s.execute(
                self._insert(Image)
                .values(
                    content_key=content_key,
                    phash=phash,
                    width=width,
                    height=height,
                    size_bytes=size_bytes,
                    first_seen=now(),
                )
                .on_conflict_do_nothing(index_elements=["content_key"])
            )

    def put_classified(
        self,
        images: Sequence[tuple[str, int | None, int | None, int | None, int | None]],
        predictions: Sequence[tuple[str, str, str, str | None, dict[str, Any], Sequence[int] | None]],
    ) -> None:
        """A classified group in one transaction: its images (content key, pHash, width, height,
        bytes) and predictions (content key, model version, type, color, scores, box). Repeats
        change nothing."""
        for _, _, type_, color, _, _ in predictions:
            if type_ not in TYPES or (color is not None and color not in COLORS):
                raise InvalidInput(f"bad prediction {type_!r}/{color!r}")
        if not images and not predictions:
            return
        t = now()
        with self._session.begin() as s:
            if images:
                s.execute(
                    self._insert(Image)
                    .values(
                        [
                            {"content_key": k, "phash": ph, "width": w, "height": h, "size_bytes": n, "first_seen": t}
                            for k, ph, w, h, n in images
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["content_key"])
                )
            if predictions:
                s.execute(
                    self._insert(Prediction)
                    .values(
                        [
                            {
                                "content_key": k,
                                "model_version": version,
                                "type": type_,
                                "color": None if type_ == PLACEHOLDER else color,
                                "scores": scores,
                                "box": list(box) if box else None,
                                "created_at": t,
                            }
                            for k, version, type_, color, scores, box in predictions
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["content_key", "model_version"])
                )

    def learn_header_keys(self, rows: Sequence[tuple[str, str, str, str]]) -> list[tuple[str, str]]:
        """Remember which bytes each (header key, content key, host, url) served, in one transaction,
        and distrust a host whose header key now maps to new bytes, or whose bytes came under a new
        header key. Returns the (host, why) of hosts distrusted by this call."""
        if not rows:
            return []
        out: list[tuple[str, str]] = []
        t = now()
        with self._session.begin() as s:
            known = {
                r.header_key: r
                for r in s.scalars(
                    select(HeaderKey).where(HeaderKey.header_key.in_([r[0] for r in rows])).with_for_update()
                )
            }
            others = set(
                s.execute(
                    select(HeaderKey.url, HeaderKey.content_key, HeaderKey.header_key).where(
                        HeaderKey.url.in_([r[3] for r in rows])
                    )
                ).all()
            )
            reasons: dict[str, str] = {}
            for hkey, ckey, host, url in rows:
                row = known.get(hkey)
                if row is None:
                    row = HeaderKey(header_key=hkey, content_key=ckey, host=host, url=url, first_seen=t, last_seen=t)
                    s.add(row)
                    known[hkey] = row
                    if any(u == url and c == ckey and h != hkey for u, c, h in others):
                        reasons.setdefault(host, "the header key changed while the bytes did not")
                    continue
                if row.content_key != ckey:
                    reasons.setdefault(host, "a header key served different bytes")
                row.content_key, row.last_seen, row.url = ckey, t, url
            for host, why in reasons.items():
                h = s.get(Host, host, with_for_update=True)
                if h is None:
                    s.add(Host(host=host, trusted=False, reason=why, changed_at=t))
                elif h.trusted:
                    h.trusted, h.reason, h.changed_at = False, why, t
                else:
                    continue
                out.append((host, why))
        return out

    def remember_header_key(self, header_key: str, content_key: str, host: str, url: str) -> str | None:
        """Map a header key to content; return the content it mapped to before if that differs."""
        with self._session.begin() as s:
            row = s.get(HeaderKey, header_key, with_for_update=True)
            if row is None:
                s.add(
                    HeaderKey(
                        header_key=header_key,
                        content_key=content_key,
                        host=host,
                        url=url,
                        first_seen=now(),
                        last_seen=now(),
                    )
                )
                return None
            before = row.content_key
            row.content_key, row.last_seen, row.url = content_key, now(), url
            return before if before != content_key else None

    def other_header_key(self, url: str, header_key: str, content_key: str) -> bool:
        """True when `url` served the same bytes under another header key (its headers changed)."""
        with self._session() as s:
            row = s.scalars(
                select(HeaderKey.header_key)
                .where(HeaderKey.url == url, HeaderKey.content_key == content_key, HeaderKey.header_key != header_key)
                .limit(1)
            ).first()
            return row is not None

    def lookup_header_keys(self, keys: Iterable[str]) -> dict[str, str]:
        """header key -> content key, for the keys known."""
        keys = list(set(keys))
        if not keys:
            return {}
        with self._session() as s:
            return dict(
                s.execute(
                    select(HeaderKey.header_key, HeaderKey.content_key).where(HeaderKey.header_key.in_(keys))
                ).all()
            )

    def see(self, advertiser: str, url: str, content_key: str, vehicle_id: str | None = None) -> None:
        """Record that `advertiser` shows `content_key` at `url` (its inventory)."""
        self.see_many(advertiser, [(url, content_key, vehicle_id, None)])

    def see_many(self, advertiser: str, rows: Sequence[tuple[str, str, str | None, str | None]]) -> None:
        """`see` for a whole batch of (url, content key, vehicle id, answer source), in one transaction.

        A URL answered now is no longer skipped.
        """
        if not rows:
            return
        latest = {url: (key, vehicle, source) for url, key, vehicle, source in rows}
        with self._session.begin() as s:
            q = select(Sighting).where(Sighting.advertiser == advertiser, Sighting.url.in_(list(latest)))
            known = {row.url: row for row in s.scalars(q.with_for_update())}
            q_skips = select(Skip.url, Skip.vehicle_id).where(Skip.advertiser == advertiser, Skip.url.in_(list(latest)))
            skipped: dict[str, str | None] = dict(s.execute(q_skips).all())
            t = now()
            for url, (key, vehicle, source) in latest.items():
                row = known.get(url)
                vehicle = vehicle or skipped.get(url)
                if row is None:
                    s.add(
                        Sighting(
                            advertiser=advertiser,
                            url=url,
                            content_key=key,
                            vehicle_id=vehicle,
                            first_seen=t,
                            last_seen=t,
                            source=source,
                        )
                    )
                else:
                    row.content_key, row.last_seen = key, t
                    row.vehicle_id = vehicle or row.vehicle_id
                    row.source = source or row.source
            if skipped:
                s.execute(delete(Skip).where(Skip.advertiser == advertiser, Skip.url.in_(list(skipped))))

    def skip_many(self, advertiser: str, rows: Sequence[tuple[str, str, str | None]]) -> None:
        """Record the (url, reason, vehicle id) of a batch's skipped images, for the inventory page."""
        latest = {url: (reason, vehicle) for url, reason, vehicle in rows}
        if not latest:
            return
        with self._session.begin() as s:
            q = select(Skip).where(Skip.advertiser == advertiser, Skip.url.in_(list(latest)))
            known = {row.url: row for row in s.scalars(q.with_for_update())}
            t = now()
            for url, (reason, vehicle) in latest.items():
                row = known.get(url)
                if row is None:
                    s.add(
                        Skip(
                            advertiser=advertiser,
                            url=url,
                            reason=reason[:64],
                            vehicle_id=vehicle,
                            first_seen=t,
                            last_seen=t,
                        )
                    )
                else:
                    row.reason, row.last_seen = reason[:64], t
                    row.vehicle_id = vehicle or row.vehicle_id

    def seen_by(self, advertiser: str, content_key: str) -> bool:
        """True when `advertiser` has shown this image (an advertiser may only see its own)."""
        with self._session() as s:
            q = select(Sighting.url).where(Sighting.advertiser == advertiser, Sighting.content_key == content_key)
            return s.scalars(q.limit(1)).first() is not None

    def sightings(self, content_keys: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
        """content key -> [(advertiser, url)], oldest sighting first."""
        keys = list(set(content_keys))
        out: dict[str, list[tuple[str, str]]] = {k: [] for k in keys}
        if not keys:
            return out
        q = select(Sighting).where(Sighting.content_key.in_(keys)).order_by(Sighting.first_seen, Sighting.url)
        with self._session() as s:
            for row in s.scalars(q):
                out[row.content_key].append((row.advertiser, row.url))
        return out

    def phashes(self, content_keys: Iterable[str]) -> dict[str, int]:
        keys = list(set(content_keys))
        if not keys:
            return {}
        with self._session() as s:
            q = select(Image.content_key, Image.phash).where(Image.content_key.in_(keys), Image.phash.is_not(None))
            return {k: int(h) for k, h in s.execute(q).all() if h is not None}

    def all_images(self) -> list[str]:
        """Every content key an advertiser shows, in key order."""
        with self._session() as s:
            return list(s.scalars(select(Sighting.content_key).distinct().order_by(Sighting.content_key)))

    def fixed_keys(self, content_keys: Iterable[str]) -> set[str]:
        """The keys among `content_keys` that have any manual fix."""
        keys = list(set(content_keys))
        if not keys:
            return set()
        with self._session() as s:
            return set(s.scalars(select(Fix.content_key).where(Fix.content_key.in_(keys)).distinct()))

    def predicted_by(self, content_keys: Iterable[str], model_version: str) -> set[str]:
        """The keys among `content_keys` that already have a prediction by `model_version`."""
        keys = list(set(content_keys))
        if not keys:
            return set()
        with self._session() as s:
            q = select(Prediction.content_key).where(
                Prediction.content_key.in_(keys), Prediction.model_version == model_version
            )
            return set(s.scalars(q))

    def inventory(self, advertiser: str) -> list[str]:
        """The content keys an advertiser shows, newest sighting first."""
        with self._session() as s:
            return list(
                s.scalars(
                    select(Sighting.content_key)
                    .where(Sighting.advertiser == advertiser)
                    .order_by(Sighting.last_seen.desc())
                )
            )

    def listing(self, advertiser: str) -> list[Listed]:
        """Every URL of the advertiser's inventory, answered or skipped, newest scrape first."""
        sq = select(Skip.url, Skip.reason, Skip.vehicle_id, Skip.first_seen, Skip.last_seen).where(
            Skip.advertiser == advertiser
        )
        q = select(
            Sighting.url,
            Sighting.content_key,
            Sighting.vehicle_id,
            Sighting.first_seen,
            Sighting.last_seen,
            Sighting.source,
        ).where(Sighting.advertiser == advertiser)
        with self._session() as s:
            skips = {row.url: row for row in s.execute(sq)}
            rows = s.execute(q).all()
        out = []
        for row in rows:
            skip = skips.pop(row.url, None)
            out.append(
                Listed(
                    row.url,
                    row.content_key,
                    row.vehicle_id,
                    row.first_seen,
                    max(row.last_seen, skip.last_seen) if skip else row.last_seen,
                    row.source,
                    skip.reason if skip else None,
                )
            )
        for skip in skips.values():
            out.append(Listed(skip.url, None, skip.vehicle_id, skip.first_seen, skip.last_seen, None, skip.reason))
        out.sort(key=lambda r: (r.last_seen, r.url), reverse=True)
        return out

    def inventory_version(self, advertiser: str) -> tuple[Any, ...]:
        """A cheap fingerprint that changes whenever the advertiser's inventory page could: its
        sightings and skips, and any new prediction or fix (both tables only ever grow)."""
        with self._session() as s:
            return (
                *s.execute(
                    select(func.count(), func.max(Sighting.last_seen)).where(Sighting.advertiser == advertiser)
                ).one(),
                *s.execute(select(func.count(), func.max(Skip.last_seen)).where(Skip.advertiser == advertiser)).one(),
                s.scalar(select(func.max(Prediction.id))),
                s.scalar(select(func.max(Fix.id))),
            )

    def _all(self, q: Any) -> list[Any]:
        with self._session() as s:
            return list(s.scalars(q))

    def advertisers(self) -> list[tuple[str, int, int, datetime]]:
        """(advertiser, images, skipped URLs, latest scrape) for every advertiser seen, by name."""
        out: dict[str, list[Any]] = {}
        with self._session() as s:
            q = select(Sighting.advertiser, func.count(), func.max(Sighting.last_seen)).group_by(Sighting.advertiser)
            for adv, n, last in s.execute(q).all():
                out[adv] = [adv, n, 0, last]
            q = select(Skip.advertiser, func.count(), func.max(Skip.last_seen)).group_by(Skip.advertiser)
            for adv, n, last in s.execute(q).all():
                row = out.setdefault(adv, [adv, 0, 0, last])
                row[2], row[3] = n, max(row[3], last)
        return [tuple(out[k]) for k in sorted(out)]

    def image_info(self, content_key: str) -> ImageInfo | None:
        with self._session() as s:
            row = s.get(Image, content_key)
            if row is None:
                return None
            return ImageInfo(row.content_key, row.width, row.height, row.size_bytes, row.phash, row.first_seen)

    def predictions(self, content_key: str) -> list[PredictionRecord]:
        """Every model version's answer for one image, oldest first."""
        q = (
            select(Prediction)
            .where(Prediction.content_key == content_key)
            .order_by(Prediction.created_at, Prediction.id)
        )
        return [
            PredictionRecord(p.model_version, p.type, p.color, dict(p.scores), p.box, p.created_at)
            for p in self._all(q)
        ]

    def sightings_of(self, content_key: str, advertiser: str | None = None) -> list[SightingRecord]:
        """The URLs that showed this image (only `advertiser`'s, when given), oldest first."""
        q = select(Sighting).where(Sighting.content_key == content_key).order_by(Sighting.first_seen, Sighting.url)
        if advertiser is not None:
            q = q.where(Sighting.advertiser == advertiser)
        return [SightingRecord(r.advertiser, r.url, r.vehicle_id, r.first_seen, r.last_seen) for r in self._all(q)]

    def header_keys_of(self, content_key: str) -> list[HeaderKeyRecord]:
        """The header keys that led to this image, oldest first."""
        q = select(HeaderKey).where(HeaderKey.content_key == content_key).order_by(HeaderKey.first_seen)
        return [HeaderKeyRecord(r.header_key, r.url, r.host, r.first_seen, r.last_seen) for r in self._all(q)]

    # -- hosts ------------------------------------------------------------------------------------

    def trusted_hosts(self, hosts: Iterable[str]) -> set[str]:
        """The hosts among `hosts` whose headers are trusted (unknown hosts are)."""
        hosts = set(hosts)
        with self._session() as s:
            distrusted = set(s.scalars(select(Host.host).where(Host.host.in_(hosts), Host.trusted.is_(False))))
        return hosts - distrusted

    def host_trusted(self, host: str) -> bool:
        with self._session() as s:
            row = s.get(Host, host)
            return True if row is None else row.trusted

    def distrust_host(self, host: str, reason: str) -> bool:
        """Mark a host's headers untrusted; True when this call changed it."""
        with self._session.begin() as s:
            row = s.get(Host, host, with_for_update=True)
            if row is None:
                s.add(Host(host=host, trusted=False, reason=reason, changed_at=now()))
                return True
            if not row.trusted:
                return False
            row.trusted, row.reason, row.changed_at = False, reason, now()
            return True

    # -- predictions ------------------------------------------------------------------------------

    def put_prediction(
        self,
        content_key: str,
        model_version: str,
        type_: str,
        color: str | None,
        scores: dict[str, Any],
        box: Sequence[int] | None = None,
    ) -> None:
        """Store a model's answer (one per image and model version; a repeat replaces nothing)."""
        if type_ not in TYPES or (color is not None and color not in COLORS):
            raise ValueError(f"bad prediction {type_!r}/{color!r}")
        with self._session.begin() as s:
            s.execute(
                self._insert(Prediction)
                .values(
                    content_key=content_key,
                    model_version=model_version,
                    type=type_,
                    color=None if type_ == PLACEHOLDER else color,
                    scores=scores,
                    box=list(box) if box else None,
                    created_at=now(),
                )
                .on_conflict_do_nothing(index_elements=["content_key", "model_version"])
            )

    # -- fixes ------------------------------------------------------------------------------------

    def add_fix(
        self,
        content_key: str,
        field_name: str,
        new_value: str | None,
        *,
        actor: str,
        role: str,
        scope: str,
        advertiser: str | None,
        comment: str | None = None,
    ) -> FixRecord:
        """Append one fix (see `add_fixes`)."""
        return self.add_fixes(
            content_key, {field_name: new_value}, actor=actor, role=role, scope=scope, advertiser=advertiser,
            comment=comment,
        )[0]  # fmt: skip

    def add_fixes(
        self,
        content_key: str,
        changes: dict[str, str | None],
        *,
        actor: str,
        role: str,
        scope: str,
        advertiser: str | None,
        comment: str | None = None,
        idempotency: tuple[str, str, str] | None = None,
    ) -> list[FixRecord]:
        """Append a fix per changed field, all or none: every value is checked before anything is
        written, and the rows land in one transaction. Each old value is the answer the fixer saw,
        read in that transaction.

        Args:
            idempotency: (owner, key, request hash): a retry of the same request with the same
                `Idempotency-Key` returns the fixes of the first try and writes nothing.

        Raises:
            InvalidInput: no field, an unknown field, scope or label, or an advertiser-scope fix
                without an advertiser.
            NotFound: the image is unknown (`unknown_image`).
            Conflict: the key was used for another request (`idempotency_conflict`).
        """
        values = check_fix(changes, scope, advertiser)
        if idempotency is not None:
            replay = self._replay(idempotency)
            if replay is not None:
                return replay
        try:
            with self._session.begin() as s:
                if s.get(Image, content_key) is None:
                    raise NotFound(f"unknown image {content_key!r}", "unknown_image")
                current = self._resolve(s, [content_key], advertiser)[content_key]
                rows = [
                    Fix(
                        content_key=content_key,
                        advertiser=advertiser,
                        field=field_name,
                        old_value=getattr(current, field_name),
                        new_value=value,
                        actor=actor,
                        role=role,
                        scope=scope,
                        comment=comment,
                        created_at=now(),
                        model_version=current.model_version,
                    )
                    for field_name, value in values.items()
                ]
                s.add_all(rows)
                s.flush()
                if idempotency is not None:
                    owner, key, digest = idempotency
                    s.add(
                        IdempotencyKey(
                            owner=owner,
                            key=key,
                            request_sha256=digest,
                            fix_ids=[r.id for r in rows],
                            created_at=now(),
                        )
                    )
                    s.flush()  # two concurrent first tries: one of them fails here, and replays below
                return [_fix_record(r) for r in rows]
        except IntegrityError:
            replay = self._replay(idempotency) if idempotency is not None else None
            if replay is None:
                raise
            return replay

    def _replay(self, idempotency: tuple[str, str, str]) -> list[FixRecord] | None:
        """The fixes an earlier try with this key wrote (keys live `IDEMPOTENCY_HOURS`)."""
        owner, key, digest = idempotency
        with self._session() as s:
            row = s.get(IdempotencyKey, (owner, key))
            if row is None or row.created_at < now() - timedelta(hours=IDEMPOTENCY_HOURS):
                return None
            if row.request_sha256 != digest:
                raise Conflict("this Idempotency-Key was used for another request within 24 h", "idempotency_conflict")
            fixes = s.scalars(select(Fix).where(Fix.id.in_(list(row.fix_ids))).order_by(Fix.id))
            return [_fix_record(f) for f in fixes]

    # -- watch figures ----------------------------------------------------------------------------

    def count_answers(self, advertiser: str, counts: dict[tuple[str, str, str], int], day: date | None = None) -> None:
        """Add a batch's answers, keyed (model version, type, source), to today's counts."""
        if not counts:
            return
        day = day or now().date()
        with self._session.begin() as s:
            for (version, type_, source), n in sorted(counts.items()):
                stmt = self._insert(AnswerCount).values(
                    day=day, advertiser=advertiser, model_version=version, type=type_, source=source, n=n
                )
                s.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["day", "advertiser", "model_version", "type", "source"],
                        set_={"n": AnswerCount.n + stmt.excluded.n},
                    )
                )

    def answer_counts(self, since: date) -> list[tuple[date, str, str, str, str, int]]:
        """(day, advertiser, model version, type, source, n) since `since`."""
        q = select(
            AnswerCount.day,
            AnswerCount.advertiser,
            AnswerCount.model_version,
            AnswerCount.type,
            AnswerCount.source,
            AnswerCount.n,
        ).where(AnswerCount.day >= since)
        with self._session() as s:
            return [tuple(r) for r in s.execute(q).all()]  # type: ignore[misc]

    def fixes(
        self,
        advertiser: str | None = None,
        since: datetime | None = None,
        content_key: str | None = None,
        *,
        until: datetime | None = None,
        actor: str | None = None,
        field: str | None = None,
        own_only: bool = False,
        shown_by: str | None = None,
    ) -> list[FixRecord]:
        """The fix history, oldest first. An advertiser sees its own fixes and the global ones.

        Args:
            own_only: with `advertiser`, leave out the global fixes (staff filtering by advertiser).
            until: exclusive upper bound on the fix's time.
            shown_by: only fixes of images this advertiser shows (what an advertiser may read).
        """
        q = select(Fix).order_by(Fix.created_at, Fix.id)
        if advertiser is not None:
            q = q.where(
                Fix.advertiser == advertiser if own_only else (Fix.advertiser == advertiser) | (Fix.scope == "global")
            )
        if since is not None:
            q = q.where(Fix.created_at >= since)
        if until is not None:
            q = q.where(Fix.created_at < until)
        if content_key is not None:
            q = q.where(Fix.content_key == content_key)
        if actor is not None:
            q = q.where(Fix.actor == actor)
        if field is not None:
            q = q.where(Fix.field == field)
        if shown_by is not None:
            q = q.where(Fix.content_key.in_(select(Sighting.content_key).where(Sighting.advertiser == shown_by)))
        return [_fix_record(f) for f in self._all(q)]

    def fixed_phashes(self, advertiser: str | None) -> list[tuple[str, int]]:
        """(content key, pHash) of images with a fix visible to `advertiser`, for near-duplicate search."""
        q = (
            select(Image.content_key, Image.phash)
            .join(Fix, Fix.content_key == Image.content_key)
            .where(Image.phash.is_not(None))
            .distinct()
        )
        q = q.where((Fix.scope == "global") | (Fix.advertiser == advertiser))
        with self._session() as s:
            return [(k, int(h)) for k, h in s.execute(q).all() if h is not None]

    # -- answers ----------------------------------------------------------------------------------

    def answers(self, content_keys: Iterable[str], advertiser: str | None) -> dict[str, Answer]:
        """Resolved answers for the keys that have a prediction or a fix."""
        keys = list(set(content_keys))
        out: dict[str, Answer] = {}
        with self._session() as s:
            for chunk in _chunks(keys):
                out |= {k: a for k, a in self._resolve(s, chunk, advertiser).items() if a.type or a.manual}
        return out

    def _resolve(self, s: Session, keys: list[str], advertiser: str | None) -> dict[str, Answer]:
        # Plain column rows, not ORM objects: this runs for every batch and every inventory page.
        preds: dict[str, Any] = {}
        pq = (
            select(
                Prediction.content_key,
                Prediction.type,
                Prediction.color,
                Prediction.scores,
                Prediction.box,
                Prediction.model_version,
            )
            .where(Prediction.content_key.in_(keys))
            .order_by(Prediction.created_at, Prediction.id)
        )
        for row in s.execute(pq):
            preds[row.content_key] = row  # the newest wins
        chosen: dict[tuple[str, str], tuple[int, str | None]] = {}
        fq = (
            select(Fix.content_key, Fix.field, Fix.new_value, Fix.scope, Fix.advertiser)
            .where(Fix.content_key.in_(keys))
            .order_by(Fix.created_at, Fix.id)
        )
        for f in s.execute(fq):
            if f.scope == "advertiser" and f.advertiser != advertiser:
                continue  # another advertiser's view
            rank = 1 if f.scope == "advertiser" else 0
            prev = chosen.get((f.content_key, f.field))
            if prev is None or rank >= prev[0]:
                chosen[(f.content_key, f.field)] = (rank, f.new_value)
        out = {}
        for k in keys:
            p = preds.get(k)
            type_ = p.type if p else None
            color = normalise_color(p.color) if p else None
            manual = []
            if (k, "type") in chosen:
                type_ = chosen[(k, "type")][1]
                manual.append("type")
            if (k, "color") in chosen:
                color = normalise_color(chosen[(k, "color")][1])
                manual.append("color")
            if type_ == PLACEHOLDER:
                color = None
            out[k] = Answer(
                k,
                type_,
                color,
                dict(p.scores) if p else {},
                p.box if p else None,
                p.model_version if p else None,
                tuple(manual),
            )
        return out
