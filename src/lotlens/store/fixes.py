"""Manual fixes: checked whole, appended in one transaction, replayed for a retried
`Idempotency-Key`; the history as each caller may filter it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from lotlens.errors import Conflict, InvalidInput, NotFound
from lotlens.labels import TYPES, normalise_color
from lotlens.store.cache import CacheQueries
from lotlens.store.engine import now
from lotlens.store.records import FixRecord, fix_record
from lotlens.store.tables import Fix, IdempotencyKey, Image, Sighting

FIELDS = ("type", "color")
IDEMPOTENCY_HOURS = 24
SCOPES = ("advertiser", "global")


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


class FixQueries(CacheQueries):
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
        confirmation: bool = False,
    ) -> list[FixRecord]:
        """Append a fix per changed field, all or none: every value is checked before anything is
        written, and the rows land in one transaction. Each old value is the answer the fixer saw,
        read in that transaction.

        Args:
            idempotency: (owner, key, request hash): a retry of the same request with the same
                `Idempotency-Key` returns the fixes of the first try and writes nothing.
            confirmation: a "Looks right": every value must equal the answer the fixer saw, and
                the rows are marked as confirmations (a confirmed label, not a correction).

        Raises:
            InvalidInput: no field, an unknown field, scope or label, or an advertiser-scope fix
                without an advertiser.
            NotFound: the image is unknown (`unknown_image`).
            Conflict: the key was used for another request (`idempotency_conflict`), or a
                confirmation's value is no longer the answer (`answer_changed`).
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
                if confirmation:
                    changed = [f for f, v in values.items() if getattr(current, f) != v]
                    if changed:
                        raise Conflict(
                            f"the {' and '.join(changed)} changed since the page was shown: reload and look again",
                            "answer_changed",
                        )
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
                        confirmation=confirmation,
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
                return [fix_record(r) for r in rows]
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
            return [fix_record(f) for f in fixes]

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
        after: tuple[datetime, int] | None = None,
        limit: int | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[FixRecord]:
        """The fix history, oldest first. An advertiser sees its own fixes and the global ones.

        Args:
            own_only: with `advertiser`, leave out the global fixes (staff filtering by advertiser).
            until: exclusive upper bound on the fix's time.
            shown_by: only fixes of images this advertiser shows (what an advertiser may read).
            after: keyset paging: only fixes after this (time, id), the sort key of a page's last row.
            limit: at most this many rows.
            ids: only these fixes.
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
        if after is not None:
            t, last = after
            q = q.where((Fix.created_at > t) | ((Fix.created_at == t) & (Fix.id > last)))
        if ids is not None:
            q = q.where(Fix.id.in_(list(ids)))
        if limit is not None:
            q = q.limit(limit)
        return [fix_record(f) for f in self._all(q)]

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
