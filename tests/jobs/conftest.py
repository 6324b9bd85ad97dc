"""Real services for the worker tests: a fresh PostgreSQL database, RabbitMQ and Redis brokers.
Each is skipped where absent, except under CI=true, where a missing service fails the run."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN = os.environ.get("LOTLENS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BROKERS = {
    "amqp": os.environ.get("LOTLENS_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
    "redis": os.environ.get("LOTLENS_TEST_REDIS", "redis://127.0.0.1:6379/15"),
}


def _missing(what: str, why: object) -> None:
    if os.environ.get("CI"):
        raise RuntimeError(f"{what} is needed in CI: {why}")
    pytest.skip(f"{what} not reachable: {why}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _missing("PostgreSQL", exc)
    name = f"lotlens_jobs_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def broker(kind: str) -> str:
    """The broker URL of `kind`, once a TCP connection to it succeeds."""
    from urllib.parse import urlsplit

    url = BROKERS[kind]
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 5672), timeout=3).close()
    except OSError as exc:
        _missing(f"{kind} broker at {parts.hostname}:{parts.port}", exc)
    return url
