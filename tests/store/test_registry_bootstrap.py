"""The first champion: set only while the alias points nowhere, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from lotlens.store import Store
from lotlens.store.registry import Registry


def test_promote_if_vacant_sets_the_first_champion_only(store: Store) -> None:
    reg = Registry(store)
    reg.add("m-1", "m", "/models/m-1", {"type": {"accuracy": 0.9}}, "lotlens")
    reg.add("m-2", "m", "/models/m-2", {}, "ana")
    with pytest.raises(KeyError):
        reg.promote_if_vacant("nope", actor="lotlens", reason=None)
    first = reg.promote_if_vacant("m-1", actor="lotlens", reason="bootstrap")
    assert first is not None
    assert (first.from_version, first.to_version, first.action, first.metrics) == (
        None,
        "m-1",
        "promote",
        {"type": {"accuracy": 0.9}},
    )
    assert reg.promote_if_vacant("m-2", actor="lotlens", reason="bootstrap") is None  # a second process
    assert reg.alias("champion") == "m-1"
    reg.promote("m-2", actor="ana", reason="better")
    assert reg.rollback(actor="ana", reason="worse after all").to_version == "m-1"
    assert [h.to_version for h in reg.history("champion")] == ["m-1", "m-2", "m-1"]


def test_a_concurrent_first_champion_loses_quietly(store: Store) -> None:
    """Another process sets the alias right after our first look: we leave its choice alone."""
    other = Registry(Store(store.engine))

    class Racing(Registry):
        def alias(self, alias: str) -> str | None:
            seen = super().alias(alias)
            if seen is None:
                other.promote("m-2", actor="other", reason=None)
            return seen

    reg = Racing(store)
    reg.add("m-1", "m", "/models/m-1", {}, "lotlens")
    reg.add("m-2", "m", "/models/m-2", {}, "lotlens")
    assert reg.promote_if_vacant("m-1", actor="lotlens", reason=None) is None
    assert other.alias("champion") == "m-2"
    assert [h.to_version for h in other.history("champion")] == ["m-2"]
