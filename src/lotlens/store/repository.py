"""The store: one `Store` per database, a session per call, thread-safe. Its queries come in
groups, one module each: `cache` (keys, predictions, answers), `inventory` (sightings, listings,
counts) and `fixes` (the append-only history); `records` holds what they return.
"""

from __future__ import annotations

from lotlens.store.cache import CacheQueries
from lotlens.store.engine import CHUNK, StoreBase, make_engine, now, upgrade
from lotlens.store.fixes import FIELDS, IDEMPOTENCY_HOURS, SCOPES, FixQueries, check_fix
from lotlens.store.inventory import InventoryQueries
from lotlens.store.records import (
    Answer,
    FixRecord,
    HeaderKeyRecord,
    ImageInfo,
    Listed,
    PredictionRecord,
    SightingRecord,
)

__all__ = [
    "CHUNK",
    "FIELDS",
    "IDEMPOTENCY_HOURS",
    "SCOPES",
    "Answer",
    "CacheQueries",
    "FixRecord",
    "HeaderKeyRecord",
    "ImageInfo",
    "Listed",
    "PredictionRecord",
    "SightingRecord",
    "Store",
    "check_fix",
    "make_engine",
    "now",
    "upgrade",
]


class Store(FixQueries, InventoryQueries, StoreBase):
    """Repository over one database. Thread-safe: every method opens its own session."""

    @classmethod
    def from_url(cls, url: str, migrate: bool = True) -> Store:
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine)
