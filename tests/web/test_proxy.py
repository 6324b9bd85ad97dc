"""Behind a TLS proxy: X-Forwarded-Proto counts only from LOTLENS_TRUSTED_PROXIES, so the session
cookie is Secure behind the proxy and no one else can claim https (or another client address)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lotlens.config import ApiKey, Settings
from lotlens.store import Store
from lotlens.vision import Pipeline
from lotlens.web import create_app

STAFF = ApiKey(name="ana", key="s" * 32, role="staff")


@pytest.fixture
def app(tmp_path: Path, pipeline: Pipeline) -> Iterator[object]:
    settings = Settings(data_dir=tmp_path, api_keys=[STAFF], trusted_proxies="10.0.0.0/8, 127.0.0.1")
    store = Store.from_url(settings.resolved_database_url())
    yield create_app(settings, store, pipeline)
    store.engine.dispose()


def session_cookie(app: object, client_address: str, headers: dict[str, str]) -> str:
    """Sign in as a browser behind `client_address` would; the Set-Cookie line of the session."""
    with TestClient(app, client=(client_address, 40000)) as c:  # type: ignore[arg-type]
        c.get("/signin", headers=headers)
        token = c.cookies.get("lotlens_signin")
        res = c.post(
            "/signin",
            data={"key": STAFF.key, "csrf": token, "next": "/"},
            headers=headers,
            follow_redirects=False,
        )
        assert res.status_code == 303, res.text
        [line] = [v for v in res.headers.get_list("set-cookie") if v.startswith("lotlens_session=")]
        return line.lower()


def test_the_session_cookie_is_secure_behind_a_trusted_proxy_only(app: object) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    assert "; secure" in session_cookie(app, "10.1.2.3", https)  # the proxy, in a trusted network
    assert "; secure" not in session_cookie(app, "192.0.2.7", https)  # anyone else: the header is ignored
    assert "; secure" not in session_cookie(app, "10.1.2.3", {})  # the proxy, plain http
    assert "httponly" in session_cookie(app, "10.1.2.3", https)


@pytest.mark.parametrize("value", ["10.0.0.0/33", "proxy.internal", "10.0.0.1,,"])
def test_a_wrong_trusted_proxies_is_one_line_naming_the_setting(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from lotlens import config
    from lotlens.errors import ConfigError

    monkeypatch.setenv("LOTLENS_TRUSTED_PROXIES", value)
    with pytest.raises(ConfigError) as info:
        config.load()
    assert str(info.value).startswith("LOTLENS_TRUSTED_PROXIES: ")
    assert value not in str(info.value)
