"""The async fetcher against a real local HTTP server: limits, redirects, retries, the address guard."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lotlens.config import Settings
from lotlens.errors import FetchError
from lotlens.fetch import Fetched, Fetcher, address_allowed, sniff_image

from httpserver import HITS, IMAGE, LAST_MODIFIED, PEERS, RAW_HEADERS, RAW_TARGETS

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


def test_conditional_get_is_answered_304_while_the_validator_holds(server: str) -> None:
    url, by_date = f"{server}/img/cg.jpg?name=car&etag=%22cg%22", f"{server}/img/cg-lm.jpg?name=car&lm=1"

    async def calls(f: Fetcher) -> list[Fetched]:
        return [
            await f.get(url),
            await f.get(url, etag='"cg"'),
            await f.get(url, etag='"older"'),  # another version: the bytes come
            await f.get(by_date, last_modified=LAST_MODIFIED),
            await f.get(by_date, last_modified="Sun, 01 Nov 2026 10:00:00 GMT"),
        ]

    plain, same, other, same_date, other_date = run(calls, allow_private_addresses=True)
    assert (plain.status, plain.data, plain.headers["etag"]) == (200, IMAGE, '"cg"')
    assert (same.status, same.data, same.headers["etag"]) == (304, b"", '"cg"')
    assert (other.status, other.data) == (200, IMAGE)
    assert (same_date.status, same_date.data) == (304, b"")
    assert (other_date.status, other_date.data) == (200, IMAGE)


def test_one_connection_serves_heads_304s_and_gets_in_turn(server: str) -> None:
    url = f"{server}/img/ka.jpg?name=car&etag=%22ka%22"

    async def calls(f: Fetcher) -> None:
        await f.get(url)
        await f.head(url)
        await f.get(url, etag='"ka"')
        await f.get(url)

    run(calls, allow_private_addresses=True)
    ports = [port for path, port in PEERS if path == "/img/ka.jpg"][-4:]
    assert len(set(ports)) == 1  # every answer read to its end: the connection stays alive


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
        "::",
        "fc00::1",
        "fd00::1",
        "224.0.0.1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "192.0.0.8",  # IETF protocol assignments, "global" to Python
        "192.0.0.170",
        "100.64.0.1",
        "198.18.0.1",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64: whatever is inside
        "2002:808:808::1",  # 6to4, even of a public address
        "2002:a00:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "::a00:1",  # IPv4-compatible
        "::ffff:0:a00:1",  # IPv4-translated
        "fec0::1",  # site-local
        "fe80::1",
        "fe80::1%eth0",
        "ff02::1",
        "2001:db8::1",
        "not an address",
    ],
)
def test_private_and_special_addresses_are_not_allowed(address: str) -> None:
    assert not address_allowed(address)


DENIED_V4 = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
]  # fmt: skip


def _embeddings(v4: ipaddress.IPv4Address) -> list[str]:
    n = int(v4)
    teredo = (0x20010000 << 96) | (int(ipaddress.IPv4Address("198.51.100.1")) << 64) | (0xFFFFFFFF ^ n)
    return [
        str(v4),
        f"::ffff:{v4}",  # IPv4-mapped
        str(ipaddress.IPv6Address(n)),  # IPv4-compatible
        str(ipaddress.IPv6Address((0x0064FF9B << 96) | n)),  # NAT64 well-known prefix
        str(ipaddress.IPv6Address((0x0064FF9B0001 << 80) | n)),  # local-use NAT64
        str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1)),  # 6to4
        str(ipaddress.IPv6Address(teredo)),  # Teredo (client address inverted)
    ]


@given(st.sampled_from(DENIED_V4).flatmap(lambda net: st.integers(0, ipaddress.IPv4Network(net).num_addresses - 1).map(
    lambda i, net=net: ipaddress.IPv4Network(net)[i])))  # fmt: skip
def test_a_denied_ipv4_is_denied_in_every_ipv6_form(v4: ipaddress.IPv4Address) -> None:
    for form in _embeddings(v4):
        assert not address_allowed(form), form


@given(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address))
def test_embedded_forms_never_allow_more_than_the_ipv4_itself(v4: ipaddress.IPv4Address) -> None:
    for form in _embeddings(v4)[1:]:
        assert not address_allowed(form) or address_allowed(str(v4)), form


@given(st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address))
def test_only_global_unicast_ipv6_outside_the_special_ranges_is_allowed(ip: ipaddress.IPv6Address) -> None:
    if address_allowed(str(ip)):
        assert ip in ipaddress.IPv6Network("2000::/3") or ip.ipv4_mapped is not None or ip in NAT64
        assert not any(ip in ipaddress.IPv6Network(n) for n in ("2002::/16", "2001::/32", "2001:db8::/32"))


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def test_the_nat64_and_mapped_forms_of_a_public_address_are_allowed() -> None:
    assert address_allowed("64:ff9b::808:808")
    assert address_allowed("::ffff:8.8.8.8")


@pytest.mark.parametrize("address", ["192.0.0.8", "64:ff9b::a00:1", "fec0::1", "2002:a00:1::1"])
def test_the_guard_refuses_a_name_that_resolves_into_a_special_range(address: str) -> None:
    async def resolver(host: str, _port: int) -> list[str]:
        return [address]

    async def main() -> str:
        async with Fetcher(Settings(**FAST), resolver=resolver) as f:
            try:
                await f.get("http://cdn.test/x.jpg")
            except FetchError as exc:
                return exc.reason
            return "fetched"

    assert asyncio.run(main()) == "blocked_address"


def test_public_address_is_allowed() -> None:
    assert address_allowed("93.184.216.34")
    assert address_allowed("2606:2800:220:1:248:1893:25c8:1946")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "not a url",
        "javascript:alert(1)",
        "http://example.com:99999/a.jpg",
        "http://example.com:port/a.jpg",
        "http://[fd00::1/a.jpg",
    ],
)
def test_bad_urls(url: str) -> None:
    assert reason(url) == "bad_url"


def test_a_redirect_to_a_bad_port_is_a_bad_url(server: str) -> None:
    assert reason(f"{server}/redirect?to=http://127.0.0.1:99999/x.jpg") == "bad_url"


def test_the_url_is_fetched_exactly_as_given(server: str) -> None:
    """Signed CDN and S3 URLs break when their encoding changes: %2F, //, + stay as they are."""
    target = "/raw/a%2Fb//c.jpg?sig=a%2Fb+c&x=1&A=%7e"
    got = get(f"{server}{target}")
    assert got.data == IMAGE
    assert target in RAW_TARGETS


def test_sniffs_formats() -> None:
    assert sniff_image(IMAGE) == "jpeg"
    assert sniff_image(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_image(b"GIF89a...") == "gif"
    assert sniff_image(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_image(b"<html>") is None


def test_request_headers_are_fixed(server: str) -> None:
    """What a CDN sees: an image Accept, our User-Agent, the name in Host, no compression asked."""
    target = "/raw/headers.jpg"
    assert get(f"{server}{target}").data == IMAGE
    seen = RAW_HEADERS[RAW_TARGETS.index(target)]
    assert seen["accept"].startswith("image/")
    assert seen["user-agent"].startswith("lotlens/")
    assert seen["host"] == server.removeprefix("http://")
    assert seen.get("accept-encoding", "identity") == "identity"
    assert "if-none-match" not in seen


def test_a_compressed_answer_is_never_inflated(server: str) -> None:
    """A server that gzips anyway: its bytes are not inflated (no bomb) and are not an image."""
    assert reason(f"{server}/gzip.jpg") == "not_an_image"
