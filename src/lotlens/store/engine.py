"""The database engine and its migrations: one factory, and the base every query group shares."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, String, Text, any_, bindparam, create_engine, event, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import sessionmaker

CHUNK = 5000  # keys per IN (...): PostgreSQL takes at most 65,535 bind parameters a statement


def chunks(keys: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(keys), CHUNK):
        yield keys[i : i + CHUNK]


LOOKUP_CHUNK = 1000  # keys per lookup query (`key_in`): one bind parameter, whatever the count


def now() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout for concurrent writers."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to `revision` (the `lotlens db upgrade` step)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("lotlens.store") / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


class StoreBase:
    """The engine and the session factory every group of store queries works through."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        # Lookups that read without writing: no BEGIN and no ROLLBACK, one round trip a query.
        self._read = sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(table)

    def key_in(self, column: Any, keys: list[str]) -> ColumnElement[bool]:
        """`column IN keys` with the keys in one bind parameter (a JSON array on SQLite, an array on
        PostgreSQL): no variable limit to mind, and one cached statement whatever the count.

        On PostgreSQL the keys (hashes) travel as one newline-joined text split by the server:
        psycopg dumps a list of 1,000 strings as an array in Python, which took as long as the
        query itself (1,000 URL-index lookups: 112k keys/s against 66k)."""
        if self.engine.dialect.name == "postgresql":
            if any("\n" in k for k in keys):
                return column == any_(bindparam("keys", keys, type_=ARRAY(String)))
            return column == any_(func.string_to_array(bindparam("keys", "\n".join(keys), type_=Text), "\n"))
        values = func.json_each(bindparam("keys", json.dumps(keys))).table_valued("value")
        return column.in_(select(values.c.value))

    def _all(self, q: Any) -> list[Any]:
        with self._session() as s:
            return list(s.scalars(q))
