"""Who shows what: sightings and skips per advertiser, the inventory listing, image details for
the pages, and the daily answer counts the watch reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select

from lotlens.store.engine import StoreBase, now
from lotlens.store.records import HeaderKeyRecord, ImageInfo, Listed, PredictionRecord, SightingRecord
from lotlens.store.tables import Fix, HeaderKey, Image, Prediction, ServedImage, Sighting, Skip


class InventoryQueries(StoreBase):
    def see(self, advertiser: str, url: str, content_key: str, vehicle_id: str | None = None) -> None:
        """Record that `advertiser` shows `content_key` at `url` (its inventory)."""
        self.see_many(advertiser, [(url, content_key, vehicle_id, None)])

    def vehicle_images(self, advertiser: str, vehicle_ids: Iterable[str]) -> dict[str, list[str]]:
        """vehicle id -> the content keys the advertiser shows for that vehicle."""
        ids = sorted(set(vehicle_ids))
        out: dict[str, list[str]] = {}
        with self._session() as s:
            for i in range(0, len(ids), 1000):
                q = select(Sighting.vehicle_id, Sighting.content_key).where(
                    Sighting.advertiser == advertiser, Sighting.vehicle_id.in_(ids[i : i + 1000])
                )
                for vehicle, key in s.execute(q):
                    if vehicle:
                        out.setdefault(vehicle, []).append(key)
        return out

    def see_many(self, advertiser: str, rows: Sequence[tuple[str, str, str | None, str | None]]) -> None:
        """`see` for a whole batch of (url, content key, vehicle id, answer source), in one transaction.

        A URL answered now is no longer skipped.
        """
        if not rows:
            return
        latest = {url: (key, vehicle, source) for url, key, vehicle, source in rows}
        with self._session.begin() as s:
            q_skips = select(Skip.url, Skip.vehicle_id).where(Skip.advertiser == advertiser, Skip.url.in_(list(latest)))
            skipped: dict[str, str | None] = dict(s.execute(q_skips).all())
            t = now()
            # One upsert for the batch (no read, no update per row): a known URL keeps its first
            # sighting, and its vehicle and source where this batch has none.
            table = Sighting.__table__
            stmt = self._insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=["advertiser", "url"],
                set_={
                    "content_key": stmt.excluded.content_key,
                    "last_seen": stmt.excluded.last_seen,
                    "vehicle_id": func.coalesce(stmt.excluded.vehicle_id, table.c.vehicle_id),
                    "source": func.coalesce(stmt.excluded.source, table.c.source),
                },
            )
            s.execute(
                stmt,
                [
                    {
                        "advertiser": advertiser,
                        "url": url,
                        "content_key": key,
                        "vehicle_id": vehicle or skipped.get(url),
                        "first_seen": t,
                        "last_seen": t,
                        "source": source,
                    }
                    for url, (key, vehicle, source) in sorted(latest.items())
                ],
            )
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

    def last_seen(self, content_keys: Iterable[str]) -> dict[str, datetime]:
        """content key -> the latest time any advertiser showed it (keys never shown are absent)."""
        keys = list(set(content_keys))
        out: dict[str, datetime] = {}
        with self._session() as s:
            for i in range(0, len(keys), 1000):
                q = (
                    select(Sighting.content_key, func.max(Sighting.last_seen))
                    .where(Sighting.content_key.in_(keys[i : i + 1000]))
                    .group_by(Sighting.content_key)
                )
                out.update((k, t) for k, t in s.execute(q))
        return out

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

    def inventory_versions(self) -> dict[str, tuple[Any, ...]]:
        """`inventory_version` of every advertiser seen, in four queries whatever their number."""
        with self._session() as s:
            seen = {
                adv: (n, last)
                for adv, n, last in s.execute(
                    select(Sighting.advertiser, func.count(), func.max(Sighting.last_seen)).group_by(
                        Sighting.advertiser
                    )
                ).all()
            }
            skipped = {
                adv: (n, last)
                for adv, n, last in s.execute(
                    select(Skip.advertiser, func.count(), func.max(Skip.last_seen)).group_by(Skip.advertiser)
                ).all()
            }
            newest = (s.scalar(select(func.max(Prediction.id))), s.scalar(select(func.max(Fix.id))))
        return {
            adv: (*seen.get(adv, (0, None)), *skipped.get(adv, (0, None)), *newest)
            for adv in sorted(seen.keys() | skipped.keys())
        }

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

    # -- watch figures ----------------------------------------------------------------------------

    def count_served(
        self, advertiser: str, answers: Sequence[tuple[str, str, str, str]], day: date | None = None
    ) -> None:
        """Record a batch's answers, each (content key, model version, type, source), as served to
        `advertiser` today: an image counts once a day however often it is asked; the day's last
        answer says which model served it."""
        latest = {key: (version, type_, source) for key, version, type_, source in answers}
        if not latest:
            return
        day = day or now().date()
        table = ServedImage.__table__
        stmt = self._insert(table)
        # One cached statement run over the rows (executemany), not a VALUES list compiled anew per
        # batch; an image already counted today with the same answer is left as it is (no write).
        cols = ("model_version", "type", "source")
        stmt = stmt.on_conflict_do_update(
            index_elements=["day", "advertiser", "content_key"],
            set_={c: getattr(stmt.excluded, c) for c in cols},
            where=or_(*(table.c[c].is_distinct_from(getattr(stmt.excluded, c)) for c in cols)),
        )
        rows = [
            {"day": day, "advertiser": advertiser, "content_key": k, "model_version": v, "type": t, "source": src}
            for k, (v, t, src) in sorted(latest.items())
        ]
        with self._session.begin() as s:
            s.execute(stmt, rows)

    def answer_counts(self, since: date) -> list[tuple[date, str, str, str, str, int]]:
        """(day, advertiser, model version, type, source, distinct images) since `since`."""
        cols = (
            ServedImage.day,
            ServedImage.advertiser,
            ServedImage.model_version,
            ServedImage.type,
            ServedImage.source,
        )
        q = select(*cols, func.count()).where(ServedImage.day >= since).group_by(*cols)
        with self._session() as s:
            return [tuple(r) for r in s.execute(q).all()]  # type: ignore[misc]

    def forget_served(self, before: date) -> int:
        """Drop the served-image rows of days before `before` (retention); returns how many."""
        with self._session.begin() as s:
            result: Any = s.execute(delete(ServedImage).where(ServedImage.day < before))
            return int(result.rowcount or 0)
