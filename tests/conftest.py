"""Shared fixtures: the dev image set (read in place, never copied) and the loaded bundled model."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lotlens.store import Store

from httpserver import serve

REPO = Path(__file__).resolve().parents[1]
# Settings of the test set-up itself, not of lotlens: they stay.
TEST_VARIABLES = {"LOTLENS_DEV_DATA", "LOTLENS_TEST_POSTGRES", "LOTLENS_FUZZ_DIR"}


@pytest.fixture(autouse=True)
def _no_lotlens_settings_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's `LOTLENS_DATABASE_URL` (or any other setting) must never receive test writes."""
    for name in list(os.environ):
        if name.startswith("LOTLENS_") and name not in TEST_VARIABLES:
            monkeypatch.delenv(name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """The one gate of optional tests: under `CI=true` nothing optional may skip (no dev set, no
    PostgreSQL, no Chromium is a failure there, not a quiet skip)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {report.longrepr}"


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


@pytest.fixture(scope="session")
def dev_data() -> Path:
    """`../shared/data/dev` beside the checkout (or `$LOTLENS_DEV_DATA`); skips where it is absent."""
    path = Path(os.environ.get("LOTLENS_DEV_DATA", REPO.parent / "shared" / "data" / "dev"))
    if not (path / "manifest.csv").is_file():
        pytest.skip(f"dev image set not found at {path} (set LOTLENS_DEV_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def pipeline():
    """The bundled model, loaded once for the whole session."""
    from lotlens.vision import Pipeline

    return Pipeline.load()


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """A real local HTTP server on 127.0.0.1 (see `Handler` for its paths)."""
    yield from serve("127.0.0.1")


@pytest.fixture(scope="session")
def server2() -> Iterator[str]:
    """The same server on 127.0.0.2, which guard tests treat as if it were public."""
    yield from serve("127.0.0.2")
