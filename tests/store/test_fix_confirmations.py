"""Confirmations ("Looks right") in the fix history, and migration 0009 that marks them, on SQLite
and PostgreSQL."""

from __future__ import annotations

from importlib import resources

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lotlens.access import Access, FixRequest, Principal
from lotlens.errors import Conflict, PermissionDenied
from lotlens.store import Store

K1 = "c:" + "1" * 64
SCORES = {"type": {"Dealer": 0.9, "Stock": 0.05, "Placeholder": 0.05}, "color": {"Red": 0.6, "Blue": 0.4}}
DEALER_A = Principal("dealer-a", "advertiser:a")


def _seed(store: Store) -> None:
    store.put_image(K1, phash=1)
    store.put_prediction(K1, "m1", "Dealer", "Red", SCORES, [1, 2, 30, 40])
    store.see("a", "https://cdn.example/1.jpg", K1, "veh-1")


def test_a_confirmation_repeats_the_answer_or_is_refused(store: Store) -> None:
    _seed(store)
    args = {"actor": "dealer-a", "role": "advertiser:a", "scope": "advertiser", "advertiser": "a"}
    with pytest.raises(Conflict, match="changed since"):
        store.add_fixes(K1, {"color": "Blue"}, confirmation=True, **args)
    assert store.fixes() == []
    [row] = store.add_fixes(K1, {"color": "Red"}, confirmation=True, **args)
    assert (row.old_value, row.new_value, row.confirmation) == ("Red", "Red", True)
    assert store.answers([K1], "a")[K1].manual == ("color",)  # a person's answer now, no longer unsure
    assert store.fixes()[0].confirmation is True


def test_undo_writes_compensating_fixes_for_ones_own_fixes_only(store: Store) -> None:
    _seed(store)
    access = Access(store)
    _, rows = access.record_fix(DEALER_A, FixRequest(K1, {"type": "Stock", "color": "Blue"}, "a"))
    staff = Principal("ana", "staff")
    with pytest.raises(PermissionDenied):
        access.undo_fixes(staff, "a", [r.id for r in rows])
    # someone changed the color again since: undo leaves it, reverts the type
    access.record_fix(staff, FixRequest(K1, {"color": "Black"}, "a"))
    undone = access.undo_fixes(DEALER_A, "a", [r.id for r in rows])
    assert [(f.field, f.old_value, f.new_value) for f in undone] == [("type", "Stock", "Dealer")]
    answer = store.answers([K1], "a")[K1]
    assert (answer.type, answer.color) == ("Dealer", "Black")
    assert len(store.fixes()) == 4  # nothing removed


def test_migration_0009_goes_down_and_up_keeping_the_history_append_only(store_url: str) -> None:
    store = Store.from_url(store_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("lotlens.store") / "migrations"))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
        command.upgrade(cfg, "head")
    _seed(store)
    store.add_fix(K1, "type", "Stock", actor="x", role="staff", scope="global", advertiser=None)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
        c.execute(text("update fixes set confirmation = true"))
    assert [f.confirmation for f in store.fixes()] == [False]
    store.engine.dispose()
