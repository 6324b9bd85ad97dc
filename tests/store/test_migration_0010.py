"""Migration 0010 (served_images replaces answer_counts) goes up and back down on both databases."""

from __future__ import annotations

from importlib import resources

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from lotlens.store import make_engine, upgrade


def downgrade(engine: sa.Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("lotlens.store") / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_0010_up_and_down(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine, "0009")
        assert "answer_counts" in sa.inspect(engine).get_table_names()
        upgrade(engine)
        names = sa.inspect(engine).get_table_names()
        assert "served_images" in names
        assert "answer_counts" not in names
        with engine.begin() as c:
            for key in ("c:1", "c:2"):
                c.execute(
                    sa.text(
                        "INSERT INTO served_images (day, advertiser, content_key, model_version, type, source) "
                        "VALUES ('2026-12-01', 'a', :k, 'm1', 'Dealer', 'cache')"
                    ),
                    {"k": key},
                )
        downgrade(engine, "0009")
        with engine.connect() as c:
            rows = c.execute(sa.text("SELECT advertiser, model_version, type, source, n FROM answer_counts")).all()
        assert [tuple(r) for r in rows] == [("a", "m1", "Dealer", "cache", 2)]
        assert "served_images" not in sa.inspect(engine).get_table_names()
        upgrade(engine)
        assert "served_images" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
