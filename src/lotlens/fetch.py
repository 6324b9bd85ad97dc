"""Image downloads: async httpx with global and per-host limits, timeouts, a streamed byte limit,
bounded redirects and retries, type sniffing, and an address guard.

The guard resolves each host itself and connects to the address it checked (the original name
goes in the Host header and TLS SNI), so a DNS answer cannot change between check and connect.
Every failure is a `FetchError` whose `reason` callers show as is.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from lotlens.config import Settings
from lotlens.errors import FetchError

ACCEPT = "image/avif,image/webp,image/jpeg,image/png,image/gif,image/*;q=0.8"
USER_AGENT = "lotlens/0.1 (+inventory image tagging)"
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({500, 502, 503, 504})

Resolver = Callable[[str, int], Awaitable[list[str]]]


def sniff_image(data: bytes) -> str | None:
    """The image format the bytes start with (never trust Content-Type), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return "avif" if data[8:12].startswith(b"avi") else "heif"
    return None


# Special-purpose ranges (IANA registries, RFC 6890 and later), denied by list rather than by
# Python's idea of "global", which has let through 192.0.0.8 and the IPv6 transition ranges.
_DENIED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
        "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
        "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
_DENIED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # IPv4-compatible (deprecated), :: and ::1 among them
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # local-use NAT64: the mapping is the network's own
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32) among them
        "2001:db8::/32", "3fff::/20",  # documentation
        "2002::/16",  # 6to4 (deprecated; relays reach any IPv4 inside)
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10", "fec0::/10",  # link-local, site-local (deprecated)
        "ff00::/8",  # multicast
    )
)  # fmt: skip
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped and -compatible, NAT64 (well-known
    prefix), 6to4, and Teredo (server and client)."""
    out = []
    n = int(ip)
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if n >> 32 == 0 and n > 1:  # ::a.b.c.d
        out.append(ipaddress.IPv4Address(n & 0xFFFFFFFF))
    if ip in _NAT64:
        out.append(ipaddress.IPv4Address(n & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    return out


def address_allowed(address: str) -> bool:
    """True only for public unicast addresses.

    Denied: every special-purpose range (loopback, private, shared, link-local, documentation,
    benchmarking, IETF assignments, multicast, reserved, unique and site local, and the IPv6
    transition ranges 6to4, Teredo, IPv4-compatible and local-use NAT64), and any address whose
    embedded IPv4 (IPv4-mapped, NAT64 64:ff9b::/96) is itself denied.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a scoped address ("fe80::1%eth0") or not an address at all
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in _DENIED_V4)
    if any(ip in net for net in _DENIED_V6):
        return False
    inner = embedded_ipv4(ip)
    if inner:
        return all(address_allowed(str(v4)) for v4 in inner)
    return ip in _GLOBAL_UNICAST_V6


_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


async def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError("dns", f"{host}: {exc.strerror}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_url(url: str) -> SplitResult:
    """`url` split, if it is absolute http(s) with a well-formed host and port.

    Raises:
        FetchError: reason `bad_url`.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a port out of range or not a number
    except ValueError as exc:
        raise FetchError("bad_url", f"{url[:200]!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("bad_url", url[:200])
    return parts


@dataclass(frozen=True)
class Fetched:
    """A response: its final URL, headers, and (for GET) body and sniffed format."""

    url: str
    status: int
    headers: dict[str, str]
    data: bytes = b""
    format: str | None = None


class Fetcher:
    """Async HTTP client for images. Use as `async with Fetcher(settings) as f: await f.get(url)`.

    Args:
        settings: limits and timeouts (`fetch_*`, `max_image_bytes`, `allow_private_addresses`).
        transport: an httpx transport (tests pass `httpx.MockTransport`).
        resolver: host name -> addresses (default: the system's resolver).
        extra_allowed: addresses the guard lets through although not public (tests only).
    """

    def __init__(
        self,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        extra_allowed: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self._resolver = resolver or system_resolver
        self._extra_allowed = frozenset(extra_allowed)
        timeout = httpx.Timeout(settings.fetch_timeout, connect=settings.fetch_connect_timeout)
        limits = httpx.Limits(
            max_connections=settings.fetch_concurrency, max_keepalive_connections=settings.fetch_concurrency
        )
        self._client = httpx.AsyncClient(
            timeout=timeout,
            limits=limits,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": ACCEPT, "User-Agent": USER_AGENT},
        )
        self._global = asyncio.Semaphore(settings.fetch_concurrency)
        self._per_host: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(settings.fetch_per_host))

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def head(self, url: str) -> Fetched:
        """HEAD `url` (following redirects) for its validators; no body is read."""
        return await self._with_retries(url, "HEAD")

    async def get(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """GET `url`: the body within the byte limit, and it must be an image by its bytes.

        With the validators of a copy already held (`etag`, `last_modified`), the GET is conditional
        (`If-None-Match`, `If-Modified-Since`): status 304 and no body means that copy still holds.
        """
        conditional = {}
        if etag:
            conditional["If-None-Match"] = etag
        if last_modified:
            conditional["If-Modified-Since"] = last_modified
        return await self._with_retries(url, "GET", conditional)

    async def _with_retries(self, url: str, method: str, conditional: dict[str, str] | None = None) -> Fetched:
        attempts = self.settings.fetch_retries + 1
        for attempt in range(attempts):
            try:
                async with asyncio.timeout(self.settings.fetch_total_timeout):
                    return await self._follow(url, method, conditional or {})
            except TimeoutError as exc:
                error = FetchError("timeout", f"{url}: over {self.settings.fetch_total_timeout}s")
                error.__cause__ = exc
            except FetchError as exc:
                if not (exc.reason == "timeout" or exc.reason.removeprefix("http_") in map(str, RETRY_STATUSES)):
                    raise
                error = exc
            if attempt + 1 < attempts:
                await asyncio.sleep(self.settings.fetch_backoff * (2**attempt) * (0.5 + random.random()))
        raise error

    async def _follow(self, url: str, method: str, conditional: dict[str, str]) -> Fetched:
        for _ in range(MAX_REDIRECTS + 1):
            parts = checked_url(url)
            host = parts.hostname or ""
            async with self._global, self._per_host[host]:
                resp = await self._request(method, parts, conditional)
            if resp.status in REDIRECTS and "location" in resp.headers:
                try:
                    url = str(httpx.URL(url).join(resp.headers["location"]))
                except httpx.InvalidURL as exc:
                    raise FetchError("bad_url", f"redirect to {resp.headers['location']!r}") from exc
                continue
            return resp
        raise FetchError("too_many_redirects", url)

    async def _pinned(self, host: str, port: int) -> str:
        """An address of `host` the guard allows; the connection goes to exactly this address."""
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            addresses = await self._resolver(host, port)
        if self.settings.allow_private_addresses:
            return addresses[0]
        for a in addresses:
            if a in self._extra_allowed or address_allowed(a):
                return a
        raise FetchError("blocked_address", f"{host} -> {', '.join(addresses)}")

    async def _request(self, method: str, parts: SplitResult, conditional: dict[str, str]) -> Fetched:
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._pinned(host, port)
        netloc = f"[{address}]" if ":" in address else address
        target = urlunsplit((parts.scheme, f"{netloc}:{port}", parts.path or "/", parts.query, ""))
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1]} | conditional
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        url = urlunsplit(parts)
        try:
            async with self._client.stream(method, target, headers=headers, extensions=extensions) as resp:
                hdrs = {k.lower(): v for k, v in resp.headers.items()}
                bodiless = method == "HEAD" or (resp.status_code == 304 and conditional)
                declared = hdrs.get("content-length", "")
                if bodiless or (resp.status_code in REDIRECTS and declared.isdigit() and int(declared) <= 4096):
                    # None or next to none: reading to its end is what keeps the connection alive.
                    await resp.aread()
                if resp.status_code in REDIRECTS:
                    return Fetched(url, resp.status_code, hdrs)
                if resp.status_code >= 400:
                    raise FetchError(f"http_{resp.status_code}", url)
                if bodiless:
                    return Fetched(url, resp.status_code, hdrs)
                limit = self.settings.max_image_bytes
                if declared.isdigit() and int(declared) > limit:
                    raise FetchError("too_large", f"{declared} bytes declared, limit {limit}")
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise FetchError("too_large", f"over {limit} bytes")
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", url) from exc
        except httpx.RemoteProtocolError as exc:
            raise FetchError("truncated", f"{url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise FetchError("connection", f"{url}: {exc}") from exc
        data = bytes(body)
        fmt = sniff_image(data)
        if fmt is None:
            raise FetchError("not_an_image", f"{url}: {hdrs.get('content-type', 'no content type')}, not image bytes")
        return Fetched(url, resp.status_code, hdrs, data, fmt)
