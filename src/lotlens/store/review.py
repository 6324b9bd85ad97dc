"""The review queue: dataset candidates a person must judge. Conflicts first, then by doubt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, select

from lotlens.errors import InvalidInput, NotFound
from lotlens.labels import COLORS, TYPES, normalise_color
from lotlens.store.repository import Store, now
from lotlens.store.tables import ReviewItem

ACTIONS = {"accept": "accepted", "reject": "rejected", "relabel": "relabelled"}
# The queue that holds vehicle-color doubts: photos whose color disagrees with their vehicle's
# confident color. Not a dataset version (those are `ds-...`); a decision there settles the
# image's color for the next dataset version like any other.
VEHICLE_QUEUE = "vehicles"


@dataclass(frozen=True)
class VehicleDoubt:
    """One photo whose own color disagrees with its vehicle's confident color."""

    content_key: str
    advertiser: str
    vehicle_id: str
    image_color: str  # the model's color for this photo
    vehicle_color: str  # what the vehicle's photos say together: the candidate label
    confidence: float  # the vehicle color's confidence: the item's score


@dataclass(frozen=True)
class ReviewRecord:
    id: int
    dataset: str
    content_key: str
    field: str
    kind: str
    candidates: list[dict[str, Any]]
    model_value: str | None
    score: float
    status: str
    decided_value: str | None
    decided_by: str | None
    decided_at: datetime | None


def _record(r: ReviewItem) -> ReviewRecord:
    return ReviewRecord(
        r.id,
        r.dataset,
        r.content_key,
        r.field,
        r.kind,
        list(r.candidates),
        r.model_value,
        r.score,
        r.status,
        r.decided_value,
        r.decided_by,
        r.decided_at,
    )


class ReviewQueue:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._session = store._session

    def add(
        self,
        dataset: str,
        content_key: str,
        field: str,
        kind: str,
        candidates: list[dict[str, Any]],
        model_value: str | None,
        score: float,
    ) -> None:
        """Queue an item once per dataset, image and field (re-creating a dataset adds nothing)."""
        with self._session.begin() as s:
            q = select(ReviewItem).where(
                ReviewItem.dataset == dataset, ReviewItem.content_key == content_key, ReviewItem.field == field
            )
            if s.scalars(q).first() is None:
                s.add(
                    ReviewItem(
                        dataset=dataset,
                        content_key=content_key,
                        field=field,
                        kind=kind,
                        candidates=candidates,
                        model_value=model_value,
                        score=score,
                        status="pending",
                        created_at=now(),
                    )
                )

    def add_vehicle_doubts(self, doubts: Sequence[VehicleDoubt]) -> int:
        """Queue vehicle-color doubts in one statement, once per image (a repeat, or a race with
        another batch of the same vehicle, adds nothing); returns how many were new."""
        if not doubts:
            return 0
        t = now()
        rows = {
            d.content_key: {
                "dataset": VEHICLE_QUEUE,
                "content_key": d.content_key,
                "field": "color",
                "kind": "doubt",
                "candidates": [
                    {
                        "value": d.vehicle_color,
                        "advertiser": d.advertiser,
                        "vehicle_id": d.vehicle_id,
                        "source": "vehicle",
                        "confidence": d.confidence,
                    }
                ],
                "model_value": d.image_color,
                "score": d.confidence,
                "status": "pending",
                "created_at": t,
            }
            for d in doubts
        }
        with self._session.begin() as s:
            added = s.scalars(
                self._store._insert(ReviewItem)
                .values(list(rows.values()))
                .on_conflict_do_nothing(index_elements=["dataset", "content_key", "field"])
                .returning(ReviewItem.id)
            )
            return len(added.all())

    def items(
        self,
        dataset: str | None = None,
        status: str | None = "pending",
        *,
        after: tuple[int, float, int] | None = None,
        limit: int | None = None,
    ) -> list[ReviewRecord]:
        """Conflicts first, then the labels the model doubts most.

        Args:
            after: keyset paging: only items after this `sort_key` (of a page's last row).
            limit: at most this many rows.
        """
        rank = case((ReviewItem.kind == "conflict", 0), else_=1)
        q = select(ReviewItem).order_by(rank, ReviewItem.score.desc(), ReviewItem.id)
        if dataset:
            q = q.where(ReviewItem.dataset == dataset)
        if status:
            q = q.where(ReviewItem.status == status)
        if after is not None:
            r, score, last = after
            q = q.where(
                (rank > r)
                | ((rank == r) & (ReviewItem.score < score))
                | ((rank == r) & (ReviewItem.score == score) & (ReviewItem.id > last))
            )
        if limit is not None:
            q = q.limit(limit)
        with self._session() as s:
            return [_record(r) for r in s.scalars(q)]

    def datasets(self) -> list[str]:
        """The datasets that have review items, by name."""
        with self._session() as s:
            return list(s.scalars(select(ReviewItem.dataset).distinct().order_by(ReviewItem.dataset)))

    def decide(self, item_id: int, action: str, actor: str, value: str | None = None) -> ReviewRecord:
        """Accept (the candidate label; for a conflict, the candidate `value` names), reject (keep
        it out), or relabel (with `value`).

        Raises:
            NotFound: no such item (`unknown_review_item`).
            InvalidInput: an unknown action, a label that is not one, or accepting a conflict
                without naming one of its candidates.
        """
        if action not in ACTIONS:
            raise InvalidInput(f"action must be one of {sorted(ACTIONS)}")
        with self._session.begin() as s:
            item = s.get(ReviewItem, item_id, with_for_update=True) if 0 < item_id < 2**63 else None
            if item is None:
                raise NotFound(f"no review item {item_id}", "unknown_review_item")
            if action == "relabel":
                value = _check(item.field, value)
            elif action == "accept":
                values = {c["value"] for c in item.candidates}
                if len(values) > 1 and value is not None and value in values:
                    values = {value}  # one side of the conflict, chosen
                if len(values) != 1:
                    raise InvalidInput(
                        "a conflict has several labels: relabel it with the right one, or reject it", "conflict_labels"
                    )
                value = values.pop()
            else:
                value = None
            item.status, item.decided_value, item.decided_by, item.decided_at = ACTIONS[action], value, actor, now()
            return _record(item)

    def reopen(self, item_id: int) -> ReviewRecord:
        """Undo a decision: the item is pending again (its decision was not yet used by a dataset
        that is built later; one built in between keeps what it read).

        Raises:
            NotFound: no such item (`unknown_review_item`).
        """
        with self._session.begin() as s:
            item = s.get(ReviewItem, item_id, with_for_update=True) if 0 < item_id < 2**63 else None
            if item is None:
                raise NotFound(f"no review item {item_id}", "unknown_review_item")
            item.status, item.decided_value, item.decided_by, item.decided_at = "pending", None, None, None
            return _record(item)

    def decisions(self) -> dict[tuple[str, str], ReviewRecord]:
        """The latest decision per (image, field), across datasets: what the next version applies."""
        out: dict[tuple[str, str], ReviewRecord] = {}
        q = select(ReviewItem).where(ReviewItem.status != "pending").order_by(ReviewItem.decided_at, ReviewItem.id)
        with self._session() as s:
            for r in s.scalars(q):
                out[(r.content_key, r.field)] = _record(r)
        return out


def sort_key(r: ReviewRecord) -> tuple[int, float, int]:
    """Where an item sits in `ReviewQueue.items`' order: (conflict first, score descending, id)."""
    return (0 if r.kind == "conflict" else 1, r.score, r.id)


def _check(field: str, value: str | None) -> str:
    if field == "type":
        if value not in TYPES:
            raise InvalidInput(f"type must be one of {TYPES}")
        return value
    try:
        color = normalise_color(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    if color not in COLORS:
        raise InvalidInput(f"color must be one of {COLORS}")
    return color
