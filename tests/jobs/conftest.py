"""A fresh PostgreSQL database for the worker tests (skipped where absent, except under CI=true)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from receivers import missing

PG_ADMIN = os.environ.get("LOTLENS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        missing("PostgreSQL", exc)
    name = f"lotlens_jobs_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
