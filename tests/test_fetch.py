"""The async fetcher against a real local HTTP server: limits, redirects, retries, the address guard."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from lotlens.config import Settings
from lotlens.errors import FetchError
from lotlens.fetch import Fetched, Fetcher, address_allowed, sniff_image

from httpserver import HITS, IMAGE

FAST = {"fetch_backoff": 0.01, "fetch_total_timeout": 5.0, "max_image_bytes": 20_000}


def run(coro_fn: Callable[[Fetcher], Awaitable[Any]], extra_allowed: tuple[str, ...] = (), **settings: Any) -> Any:
    async def main() -> Any:
        async with Fetcher(Settings(**(FAST | settings)), extra_allowed=extra_allowed) as f:
            return await coro_fn(f)

    return asyncio.run(main())


def get(url: str, **settings: Any) -> Fetched:
    return run(lambda f: f.get(url), **({"allow_private_addresses": True} | settings))


def reason(url: str, **settings: Any) -> str:
    with pytest.raises(FetchError) as info:
        get(url, **settings)
    return info.value.reason


def test_fetches_an_image(server: str) -> None:
    got = get(f"{server}/car.jpg")
    assert (got.data, got.format, got.status) == (IMAGE, "jpeg", 200)
    assert got.headers["content-length"] == str(len(IMAGE))


def test_head_reads_validators_without_the_body(server: str) -> None:
    got = run(lambda f: f.head(f"{server}/etag/car.jpg"), allow_private_addresses=True)
    assert got.headers["etag"] == '"v1"'
    assert got.data == b""


def test_follows_a_redirect_and_reports_the_final_url(server: str) -> None:
    got = get(f"{server}/hop.jpg")
    assert got.data == IMAGE
    assert got.url == f"{server}/car.jpg"


def test_type_comes_from_the_bytes_not_the_header(server: str) -> None:
    assert get(f"{server}/wrong-type.jpg").format == "jpeg"
    assert reason(f"{server}/html.jpg") == "not_an_image"


def test_retries_a_flaky_server(server: str) -> None:
    before = HITS.get("GET /flaky.jpg", 0)
    assert before % 3 == 0  # the server fails twice, then answers
    assert get(f"{server}/flaky.jpg", fetch_retries=2).data == IMAGE
    assert HITS["GET /flaky.jpg"] - before == 3


def test_retries_are_bounded(server: str) -> None:
    before = HITS.get("GET /error.jpg", 0)
    assert reason(f"{server}/error.jpg", fetch_retries=2) == "http_500"
    assert HITS["GET /error.jpg"] - before == 3


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/missing.jpg", "http_404"),
        ("/big.jpg", "too_large"),
        ("/big-chunked.jpg", "too_large"),
        ("/loop.jpg", "too_many_redirects"),
        ("/truncated.jpg", "truncated"),
    ],
)
def test_failures_have_reasons(server: str, path: str, expected: str) -> None:
    assert reason(f"{server}{path}") == expected


def test_connection_reset(server: str) -> None:
    assert reason(f"{server}/reset.jpg", fetch_retries=0) in ("connection", "truncated")


def test_timeout(server: str) -> None:
    assert reason(f"{server}/slow.jpg", fetch_timeout=0.2, fetch_retries=0) == "timeout"
    assert reason(f"{server}/slow.jpg", fetch_total_timeout=0.3, fetch_retries=0) == "timeout"


def test_refused_connection() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    assert reason(f"http://127.0.0.1:{port}/x.jpg", fetch_retries=0) == "connection"


def test_guard_blocks_loopback(server: str) -> None:
    with pytest.raises(FetchError) as info:
        run(lambda f: f.get(f"{server}/car.jpg"))
    assert info.value.reason == "blocked_address"


def test_guard_blocks_a_redirect_to_loopback(server: str, server2: str) -> None:
    """127.0.0.2 stands in for a public CDN; its redirect to 127.0.0.1 must be refused."""
    ok = run(lambda f: f.get(f"{server2}/car.jpg"), extra_allowed=("127.0.0.2",))
    assert ok.data == IMAGE
    with pytest.raises(FetchError) as info:
        run(lambda f: f.get(f"{server2}/redirect?to={server}/car.jpg"), extra_allowed=("127.0.0.2",))
    assert info.value.reason == "blocked_address"


def test_guard_checks_resolved_names_and_connects_to_the_checked_address(server2: str) -> None:
    port = server2.rsplit(":", 1)[1]

    async def resolver(host: str, _port: int) -> list[str]:
        return {"cdn.test": ["127.0.0.2"], "internal.test": ["10.0.0.5"]}[host]

    async def main() -> tuple[Fetched, str]:
        async with Fetcher(Settings(**FAST), resolver=resolver, extra_allowed=("127.0.0.2",)) as f:
            ok = await f.get(f"http://cdn.test:{port}/car.jpg")  # connects to 127.0.0.2, Host: cdn.test
            try:
                await f.get(f"http://internal.test:{port}/car.jpg")
            except FetchError as exc:
                return ok, exc.reason
            return ok, "fetched"

    ok, blocked = asyncio.run(main())
    assert ok.data == IMAGE
    assert blocked == "blocked_address"


def test_dns_failure() -> None:
    async def resolver(host: str, _port: int) -> list[str]:
        raise FetchError("dns", host)

    async def main() -> str:
        async with Fetcher(Settings(**FAST), resolver=resolver) as f:
            try:
                await f.get("http://nowhere.invalid/x.jpg")
            except FetchError as exc:
                return exc.reason
            return "fetched"

    assert asyncio.run(main()) == "dns"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "192.168.0.1",
        "::1",
        "fc00::1",
        "224.0.0.1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
    ],
)
def test_private_and_special_addresses_are_not_allowed(address: str) -> None:
    assert not address_allowed(address)


def test_public_address_is_allowed() -> None:
    assert address_allowed("93.184.216.34")
    assert address_allowed("2606:2800:220:1:248:1893:25c8:1946")


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "not a url"])
def test_bad_urls(url: str) -> None:
    assert reason(url) == "bad_url"


def test_sniffs_formats() -> None:
    assert sniff_image(IMAGE) == "jpeg"
    assert sniff_image(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_image(b"GIF89a...") == "gif"
    assert sniff_image(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_image(b"<html>") is None


def test_accept_header_is_fixed() -> None:
    seen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(request.headers)
        return httpx.Response(200, content=IMAGE)

    async def main() -> Fetched:
        settings = Settings(**FAST, allow_private_addresses=True)
        async with Fetcher(settings, transport=httpx.MockTransport(handler)) as f:
            return await f.get("http://127.0.0.1/x.jpg")

    assert asyncio.run(main()).data == IMAGE
    assert seen["accept"].startswith("image/")
    assert seen["host"] == "127.0.0.1"
