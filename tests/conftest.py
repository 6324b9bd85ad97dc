"""Shared fixtures: the dev image set (read in place, never copied) and the loaded bundled model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
