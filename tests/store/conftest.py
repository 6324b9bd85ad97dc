"""The store fixture: every store test runs on SQLite and on PostgreSQL, each on a fresh database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lotlens.store import Store

PG_ADMIN = os.environ.get("LOTLENS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise  # CI must test PostgreSQL for real, never skip it
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lotlens.db'}"
        return
    name = f"lotlens_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.from_url(store_url)
    yield s
    s.engine.dispose()
