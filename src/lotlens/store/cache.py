"""Images, header keys, hosts, predictions and answer resolution: what the batch service asks.

Answers resolve per advertiser: that advertiser's latest fix of a field, else the latest global
(staff) fix, else the newest prediction. Predictions and fixes live in separate rows, so a
prediction that finishes after a fix can never overwrite it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotlens.errors import InvalidInput
from lotlens.labels import COLORS, PLACEHOLDER, TYPES, normalise_color
from lotlens.store.engine import LOOKUP_CHUNK, StoreBase, chunks, now
from lotlens.store.records import Answer, HostLessons, HostTrust, UrlRecord, UrlSeen
from lotlens.store.tables import Fix, HeaderKey, Host, Image, Prediction, Url


def url_key(url: str) -> str:
    """The URL index's key of a normalised URL (fixed width, whatever the URL's length)."""
    return "u:" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


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
        # Cached statements run over the rows (executemany), not a VALUES list compiled per group.
        with self._session.begin() as s:
            if images:
                s.execute(
                    self._insert(Image).on_conflict_do_nothing(index_elements=["content_key"]),
                    [
                        {"content_key": k, "phash": ph, "width": w, "height": h, "size_bytes": n, "first_seen": t}
                        for k, ph, w, h, n in images
                    ],
                )
            if predictions:
                s.execute(
                    self._insert(Prediction).on_conflict_do_nothing(index_elements=["content_key", "model_version"]),
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
                    ],
                )

    def learn_urls(self, seen: Sequence[UrlSeen], url_trust_checks: int) -> HostLessons:
        """Write what a batch saw under its URLs, in one transaction and without reading them again
        (`before` is what the batch read): the URL index, the header keys, and the hosts' lessons.

        Headers: a host is distrusted when a header key served new bytes, or the header key of a URL
        changed while its bytes did not. URLs: every request that found a known URL's bytes unchanged
        (a 304, or the same bytes) counts toward the host's URL trust, earned after
        `url_trust_checks` such checks with no change ever (0: never); the first change under a known
        URL loses it and zeroes the count, for good.
        """
        out = HostLessons()
        if not seen:
            return out
        t = now()
        rows: dict[str, dict[str, Any]] = {}
        header_rows: dict[str, dict[str, Any]] = {}
        checks: dict[str, int] = {}
        changed: set[str] = set()
        reasons: dict[str, str] = {}
        for v in seen:
            b = v.before
            checks.setdefault(v.host, 0)
            if b is not None and not v.fetched:  # a 304: the validators still hold
                header, etag, modified, same = b.header_key, b.etag, b.last_modified, True
            else:
                header, etag, modified = v.header_key, v.etag, v.last_modified
                same = b is not None and b.content_key == v.content_key
            if b is not None:
                if same:
                    checks[v.host] += 1
                    if b.header_key and header and header != b.header_key:
                        reasons.setdefault(v.host, "the header key changed while the bytes did not")
                else:
                    changed.add(v.host)
                    if header and header == b.header_key:
                        reasons.setdefault(v.host, "a header key served different bytes")
            rows[url_key(v.url)] = {
                "url_key": url_key(v.url),
                "url": v.url,
                "host": v.host,
                "content_key": v.content_key,
                "header_key": header,
                "etag": etag,
                "last_modified": modified,
                "checks": (b.checks + 1) if b is not None and same else 0,
                "first_seen": t,
                "last_checked": t,
            }
            if header and v.fetched:
                header_rows[header] = {
                    "header_key": header,
                    "content_key": v.content_key,
                    "host": v.host,
                    "url": v.url,
                    "first_seen": t,
                    "last_seen": t,
                }
        with self._session.begin() as s:
            if rows:
                stmt = self._insert(Url)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["url_key"],
                    set_={
                        c: getattr(stmt.excluded, c)
                        for c in ("url", "host", "content_key", "header_key", "etag", "last_modified", "checks")
                    }
                    | {"last_checked": stmt.excluded.last_checked},
                )
                s.execute(stmt, [rows[k] for k in sorted(rows)])  # one order: no deadlock between batches
            if header_rows:
                stmt = self._insert(HeaderKey)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["header_key"],
                    set_={"content_key": stmt.excluded.content_key, "url": stmt.excluded.url, "last_seen": t},
                )
                s.execute(stmt, [header_rows[k] for k in sorted(header_rows)])
            s.execute(
                self._insert(Host)
                .values([{"host": h, "trusted": True, "changed_at": t} for h in sorted(checks)])
                .on_conflict_do_nothing(index_elements=["host"])
            )
            hosts = {h.host: h for h in s.scalars(select(Host).where(Host.host.in_(sorted(checks))).with_for_update())}
            for name in sorted(checks):
                h = hosts[name]
                why = reasons.get(name)
                if why and h.trusted:
                    h.trusted, h.reason, h.changed_at = False, why, t
                    out.headers_distrusted.append((name, why))
                if name in changed:
                    if h.url_trusted_at is not None:
                        out.url_trust_lost.append(name)
                    h.url_changes, h.url_checks, h.url_trusted_at = h.url_changes + 1, 0, None
                    continue
                h.url_checks += checks[name]
                earned = 0 < url_trust_checks <= h.url_checks
                if earned and h.url_changes == 0 and h.url_trusted_at is None:
                    h.url_trusted_at = t
                    out.url_trust_earned.append(name)
        return out

    def lookup_urls(self, urls: Iterable[str]) -> dict[str, UrlRecord]:
        """normalised URL -> what the URL index holds for it, for the URLs known (a query per 1,000)."""
        by_key = {url_key(u): u for u in urls}
        keys = list(by_key)
        out: dict[str, UrlRecord] = {}
        t = Url.__table__.c  # Core columns: rows as they come, no ORM loading
        cols = (t.url_key, t.content_key, t.header_key, t.etag, t.last_modified, t.checks)
        with self._read() as s:
            for i in range(0, len(keys), LOOKUP_CHUNK):
                for k, ckey, hkey, etag, modified, n in s.execute(
                    select(*cols).where(self.key_in(t.url_key, keys[i : i + LOOKUP_CHUNK]))
                ):
                    url = by_key[k]
                    out[url] = UrlRecord(url, ckey, hkey, etag, modified, n)
        return out

    def host_trust(self, hosts: Iterable[str]) -> dict[str, HostTrust]:
        """What each of `hosts` has earned (a host never seen: its headers are trusted, not its URLs)."""
        hosts = set(hosts)
        out = dict.fromkeys(hosts, HostTrust())
        with self._read() as s:
            q = select(Host.host, Host.trusted, Host.url_trusted_at).where(Host.host.in_(sorted(hosts)))
            for host, trusted, url_trusted_at in s.execute(q):
                out[host] = HostTrust(bool(trusted), url_trusted_at is not None)
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
        """header key -> content key, for the keys known (a query per 1,000 keys)."""
        keys = list(set(keys))
        out: dict[str, str] = {}
        with self._read() as s:
            for i in range(0, len(keys), LOOKUP_CHUNK):
                q = select(HeaderKey.header_key, HeaderKey.content_key).where(
                    self.key_in(HeaderKey.header_key, keys[i : i + LOOKUP_CHUNK])
                )
                out.update((k, c) for k, c in s.execute(q))
        return out

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
        with self._read() as s:
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
