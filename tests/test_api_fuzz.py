"""Schemathesis over `/openapi.json`: generated requests to every endpoint, as staff, with a
bounded number of examples. No answer may be a server error or break its declared schema."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from lotlens.config import ApiKey, Settings
from lotlens.store import Store
from lotlens.web import create_app

from fakes import FakePipeline

STAFF = ApiKey(name="fuzz (staff)", key="f" * 32, role="staff")
HEADERS = {"Authorization": f"Bearer {STAFF.key}"}
_tmp = Path(os.environ.get("LOTLENS_FUZZ_DIR", "/tmp")) / f"lotlens-fuzz-{os.getpid()}"
_settings = Settings(
    data_dir=_tmp,
    api_keys=[STAFF],
    allow_private_addresses=False,  # generated URLs must never reach a network
    fetch_retries=0,
    fetch_total_timeout=1.0,
    fetch_connect_timeout=0.5,
    batch_deadline=5.0,
    max_batch=20,
)
_app = create_app(_settings, Store.from_url(_settings.resolved_database_url()), FakePipeline())  # type: ignore[arg-type]
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@pytest.fixture(scope="module", autouse=True)
def started() -> object:
    """Run the app's start-up (state, model) once; schemathesis then calls the same app."""
    with TestClient(_app) as client:
        yield client


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_schema_violation(case: schemathesis.Case) -> None:
    response = case.call(headers=HEADERS)
    assert response.status_code < 500 or (response.status_code == 503 and case.path == "/readyz"), (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}"
    )
    if response.status_code < 400:
        case.validate_response(response, checks=[response_schema_conformance])
