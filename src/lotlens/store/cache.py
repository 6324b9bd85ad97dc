"""Images, header keys, hosts, predictions and answer resolution: what the batch service asks.

Answers resolve per advertiser: that advertiser's latest fix of a field, else the latest global
(staff) fix, else the newest prediction. Predictions and fixes live in separate rows, so a
prediction that finishes after a fix can never overwrite it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotlens.errors import InvalidInput
from lotlens.labels import COLORS, PLACEHOLDER, TYPES, normalise_color
from lotlens.store.engine import StoreBase, chunks, now
from lotlens.store.records import Answer
from lotlens.store.tables import Fix, HeaderKey, Host, Image, Prediction


class CacheQueries(StoreBase):
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
        self.put_classified([(content_key, phash, width, height, size_bytes)], [])

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
        self.put_classified([], [(content_key, model_version, type_, color, scores, box)])

    # -- answers ----------------------------------------------------------------------------------

    def answers(self, content_keys: Iterable[str], advertiser: str | None) -> dict[str, Answer]:
        """Resolved answers for the keys that have a prediction or a fix."""
        keys = list(set(content_keys))
        out: dict[str, Answer] = {}
        with self._session() as s:
            for chunk in chunks(keys):
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
