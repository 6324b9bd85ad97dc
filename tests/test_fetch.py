"""`fetch_bytes` against a real local HTTP server: limits, redirects, errors, the address guard."""

from __future__ import annotations

import pytest

from lotlens.errors import FetchError
from lotlens.fetch import fetch_bytes, is_public_host

from conftest import IMAGE


def test_fetches_an_image(server: str) -> None:
    assert fetch_bytes(f"{server}/car.jpg", max_bytes=1_000_000, allow_private=True) == IMAGE


def test_follows_a_redirect(server: str) -> None:
    assert fetch_bytes(f"{server}/hop.jpg", max_bytes=1_000_000, allow_private=True) == IMAGE


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/missing.jpg", "http_404"),
        ("/error.jpg", "http_500"),
        ("/big.jpg", "too_large"),
        ("/big-chunked.jpg", "too_large"),
        ("/loop.jpg", "too_many_redirects"),
    ],
)
def test_failures_have_reasons(server: str, path: str, reason: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch_bytes(f"{server}{path}", max_bytes=10_000, allow_private=True)
    assert info.value.reason == reason


def test_timeout(server: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch_bytes(f"{server}/slow.jpg", max_bytes=1_000_000, timeout=0.3, allow_private=True)
    assert info.value.reason == "timeout"


def test_refused_connection() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(FetchError) as info:
        fetch_bytes(f"http://127.0.0.1:{port}/x.jpg", max_bytes=1000, allow_private=True)
    assert info.value.reason == "connection"


def test_guard_blocks_loopback_and_private_hosts(server: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch_bytes(f"{server}/car.jpg", max_bytes=1_000_000)
    assert info.value.reason == "blocked_address"
    assert not is_public_host("127.0.0.1")
    assert not is_public_host("10.1.2.3")
    assert not is_public_host("169.254.169.254")
    assert is_public_host("93.184.216.34")


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "not a url"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch_bytes(url, max_bytes=1000)
    assert info.value.reason == "bad_url"
