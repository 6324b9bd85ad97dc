"""Failed authentications per client address: the throttle itself, then the API's bearer check and
the pages' sign-in sharing it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lotlens.api.throttle import AuthThrottle
from lotlens.config import ApiKey, Settings
from lotlens.store import Store
from lotlens.web import create_app

from fakes import FakePipeline

KEY = ApiKey(name="dealer-a", key="a" * 32, role="advertiser:a")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_past_its_failures_until_the_oldest_ages_out() -> None:
    clock = Clock()
    throttle = AuthThrottle(failures=3, window=60.0, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1")
        clock.now += 10
    assert throttle.retry_after("10.0.0.1") == 0.0  # two failures: still allowed
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == pytest.approx(40.0)  # the first failure was 20 s ago
    assert throttle.retry_after("10.0.0.2") == 0.0  # another address is not concerned
    clock.now += 40
    assert throttle.retry_after("10.0.0.1") == 0.0  # the first failure aged out: two left
    clock.now += 1000
    assert throttle.retry_after("10.0.0.1") == 0.0
    assert len(throttle) == 0  # nothing recent is kept


def test_memory_is_bounded_whatever_the_number_of_addresses() -> None:
    throttle = AuthThrottle(failures=2, window=60.0, max_addresses=100, clock=Clock())
    for i in range(10_000):
        throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(throttle) == 100
    throttle.failed("10.0.0.9")
    throttle.failed("10.0.0.9")
    assert throttle.retry_after("10.0.0.9") > 0  # the most recent addresses are the ones kept


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AuthThrottle(failures=0)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path, api_keys=[KEY])
    store = Store.from_url(settings.resolved_database_url())
    return TestClient(create_app(settings, store, FakePipeline()))


def test_api_and_sign_in_share_one_throttle_per_address(client: TestClient) -> None:
    with client:
        throttle: AuthThrottle = client.app.state.auth_throttle  # type: ignore[attr-defined]
        throttle.failures = 4  # the default (20) works the same way, with more requests
        good = {"Authorization": f"Bearer {KEY.key}"}
        for _ in range(3):
            assert client.get("/v1/fixes", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/fixes", headers=good).status_code == 200  # a good key does not count
        client.get("/signin")
        token = client.cookies.get("lotlens_signin")
        wrong = client.post("/signin", data={"key": "x" * 32, "csrf": token})
        assert wrong.status_code == 401  # the fourth failure, from the page
        refused = client.get("/v1/fixes", headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_failures"
        assert 0 < int(refused.headers["retry-after"]) <= 300
        assert client.get("/v1/fixes", headers=good).status_code == 429  # the address waits, whatever its key
        page = client.post("/signin", data={"key": KEY.key, "csrf": token}, follow_redirects=False)
        assert page.status_code == 429
        assert "Too many unknown keys" in page.text
        assert client.cookies.get("lotlens_session") is None
        assert KEY.key not in page.text
        assert "x" * 32 not in page.text
