"""The model registry in the store: registered model folders, the `champion`/`challenger` aliases,
and the promotion log (who, when, why, on which metrics). Rollback walks that log back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from lotlens.errors import Conflict, InvalidInput, NotFound
from lotlens.store.repository import Store, now
from lotlens.store.tables import Alias, ModelRow, Promotion

ALIASES = ("champion", "challenger")


@dataclass(frozen=True)
class ModelRecord:
    version: str
    name: str
    path: str
    metrics: dict[str, Any]
    dataset: str | None
    registered_by: str
    created_at: datetime


@dataclass(frozen=True)
class PromotionRecord:
    id: int
    alias: str
    from_version: str | None
    to_version: str
    action: str
    actor: str
    reason: str | None
    metrics: dict[str, Any]
    created_at: datetime


def _model(m: ModelRow) -> ModelRecord:
    return ModelRecord(m.version, m.name, m.path, dict(m.metrics), m.dataset, m.registered_by, m.created_at)


def _promotion(p: Promotion) -> PromotionRecord:
    return PromotionRecord(
        p.id, p.alias, p.from_version, p.to_version, p.action, p.actor, p.reason, dict(p.metrics), p.created_at
    )


class Registry:
    """Data access for models and aliases; copying folders and evaluating live in `lotlens.train`."""

    def __init__(self, store: Store) -> None:
        self._session = store._session

    def add(
        self,
        version: str,
        name: str,
        path: str,
        metrics: dict[str, Any],
        registered_by: str,
        dataset: str | None = None,
    ) -> ModelRecord:
        """Register a model version (idempotent for the same version)."""
        with self._session.begin() as s:
            row = s.get(ModelRow, version)
            if row is None:
                row = ModelRow(
                    version=version,
                    name=name,
                    path=path,
                    metrics=metrics,
                    dataset=dataset,
                    registered_by=registered_by,
                    created_at=now(),
                )
                s.add(row)
            return _model(row)

    def get(self, version: str) -> ModelRecord | None:
        with self._session() as s:
            row = s.get(ModelRow, version)
            return _model(row) if row else None

    def models(self) -> list[ModelRecord]:
        with self._session() as s:
            return [_model(m) for m in s.scalars(select(ModelRow).order_by(ModelRow.created_at))]

    def model_page(self, after: tuple[datetime, str] | None, limit: int) -> list[ModelRecord]:
        """Up to `limit` models, oldest first (then by version), after the (time, version) `after`."""
        q = select(ModelRow).order_by(ModelRow.created_at, ModelRow.version).limit(limit)
        if after is not None:
            t, last = after
            q = q.where((ModelRow.created_at > t) | ((ModelRow.created_at == t) & (ModelRow.version > last)))
        with self._session() as s:
            return [_model(m) for m in s.scalars(q)]

    def alias(self, alias: str) -> str | None:
        """The version an alias points at, or None."""
        with self._session() as s:
            row = s.get(Alias, alias)
            return row.version if row else None

    def aliases(self) -> dict[str, str]:
        with self._session() as s:
            return {a.alias: a.version for a in s.scalars(select(Alias))}

    def promote(
        self, version: str, *, actor: str, reason: str | None, alias: str = "champion", action: str = "promote"
    ) -> PromotionRecord:
        """Point `alias` at `version` and log it with the model's metrics.

        Raises:
            NotFound: the version is not registered (`unknown_model`).
            InvalidInput: an unknown alias.
        """
        if alias not in ALIASES:
            raise InvalidInput(f"alias must be one of {ALIASES}")
        with self._session.begin() as s:
            model = s.get(ModelRow, version)
            if model is None:
                raise NotFound(f"unknown model {version!r}", "unknown_model")
            row = s.get(Alias, alias, with_for_update=True)
            before = row.version if row else None
            if row is None:
                s.add(Alias(alias=alias, version=version, updated_at=now()))
            else:
                row.version, row.updated_at = version, now()
            p = Promotion(
                alias=alias,
                from_version=before,
                to_version=version,
                action=action,
                actor=actor,
                reason=reason,
                metrics=dict(model.metrics),
                created_at=now(),
            )
            s.add(p)
            s.flush()
            return _promotion(p)

    def promote_if_vacant(
        self, version: str, *, actor: str, reason: str | None, alias: str = "champion"
    ) -> PromotionRecord | None:
        """Point `alias` at `version` only if it points nowhere yet; None when it already did.

        Safe when several processes start at once: the alias row is the primary key, so only one
        insert wins and the others see the winner.

        Raises:
            KeyError: the version is not registered.
        """
        if self.alias(alias) is not None:
            return None
        with self._session.begin() as s:
            model = s.get(ModelRow, version)
            if model is None:
                raise KeyError(version)
            if s.get(Alias, alias) is not None:
                return None
            s.add(Alias(alias=alias, version=version, updated_at=now()))
            p = Promotion(
                alias=alias,
                from_version=None,
                to_version=version,
                action="promote",
                actor=actor,
                reason=reason,
                metrics=dict(model.metrics),
                created_at=now(),
            )
            s.add(p)
            try:
                s.flush()
            except IntegrityError:
                s.rollback()
                return None
            return _promotion(p)

    def rollback(self, *, actor: str, reason: str | None, alias: str = "champion") -> PromotionRecord:
        """Point `alias` back at the version it had before its latest change.

        Raises:
            Conflict: nothing to roll back to (`nothing_to_roll_back`).
        """
        history = self.history(alias)
        if not history or history[-1].from_version is None:
            raise Conflict(f"no earlier {alias} to roll back to", "nothing_to_roll_back")
        return self.promote(history[-1].from_version, actor=actor, reason=reason, alias=alias, action="rollback")

    def history(self, alias: str | None = None) -> list[PromotionRecord]:
        q = select(Promotion).order_by(Promotion.created_at, Promotion.id)
        if alias:
            q = q.where(Promotion.alias == alias)
        with self._session() as s:
            return [_promotion(p) for p in s.scalars(q)]

    def promotion_page(
        self, alias: str | None, after: tuple[datetime, int] | None, limit: int
    ) -> list[PromotionRecord]:
        """Up to `limit` entries of the promotion log in `history`'s order, after the (time, id) `after`."""
        q = select(Promotion).order_by(Promotion.created_at, Promotion.id).limit(limit)
        if alias:
            q = q.where(Promotion.alias == alias)
        if after is not None:
            t, last = after
            q = q.where((Promotion.created_at > t) | ((Promotion.created_at == t) & (Promotion.id > last)))
        with self._session() as s:
            return [_promotion(p) for p in s.scalars(q)]
