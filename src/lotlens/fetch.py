"""Image downloads: async aiohttp with global and per-host limits, timeouts, a streamed byte limit,
bounded redirects and retries, type sniffing, and an address guard.

The guard resolves each host itself (aiohttp's resolver hook) and the connection goes to an address
it checked (the original name stays in the Host header and TLS SNI), so a DNS answer cannot change
between check and connect.
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
from urllib.parse import SplitResult, urlsplit

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from lotlens.config import Settings
from lotlens.errors import FetchError

ACCEPT = "image/avif,image/webp,image/jpeg,image/png,image/gif,image/*;q=0.8"
USER_AGENT = "lotlens/0.1 (+inventory image tagging)"
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({500, 502, 503, 504})
DNS_TTL = 60  # seconds a host's checked addresses are reused by the connection pool

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


class _GuardResolver(AbstractResolver):
    """aiohttp's resolver for the fetcher: a name's addresses that the address guard allows, only.

    The connector connects to exactly what this returns, so the check and the connection see the
    same answer (no DNS rebinding in between). aiohttp never asks it about an IP literal: the
    fetcher checks those itself before each request.
    """

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._fetcher._allowed(host, await self._fetcher._resolver(host, port))
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        return None


class Fetcher:
    """Async HTTP client for images. Use as `async with Fetcher(settings) as f: await f.get(url)`.

    One aiohttp session per fetcher: its connections stay alive between requests (a warm scrape is
    mostly conditional GETs answered 304 on a kept-alive connection; aiohttp's C parser costs a
    tenth of the CPU of httpx's pure-Python stack there).

    Args:
        settings: limits and timeouts (`fetch_*`, `max_image_bytes`, `allow_private_addresses`).
        resolver: host name -> addresses (default: the system's resolver).
        extra_allowed: addresses the guard lets through although not public (tests only).
    """

    def __init__(
        self,
        settings: Settings,
        resolver: Resolver | None = None,
        extra_allowed: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self._resolver = resolver or system_resolver
        self._extra_allowed = frozenset(extra_allowed)
        self._session: aiohttp.ClientSession | None = None
        self._global = asyncio.Semaphore(settings.fetch_concurrency)
        self._per_host: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(settings.fetch_per_host))

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use (aiohttp binds it to the running event loop)."""
        if self._session is None:
            s = self.settings
            connector = aiohttp.TCPConnector(
                limit=s.fetch_concurrency,
                limit_per_host=s.fetch_per_host,
                resolver=_GuardResolver(self),
                ttl_dns_cache=DNS_TTL,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=s.fetch_connect_timeout, sock_read=s.fetch_timeout
                ),
                # Identity only: image bytes are compressed already, and a body that inflates can
                # not outgrow the byte limit unseen.
                headers={"Accept": ACCEPT, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                auto_decompress=False,
                trust_env=False,  # no proxy from the environment: the guard's address is the one used
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

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
            if _is_ip(host):  # aiohttp resolves no literal: the guard checks it here
                self._allowed(host, [host])
            async with self._global, self._per_host[host]:
                resp = await self._request(method, url, conditional)
            if resp.status in REDIRECTS and "location" in resp.headers:
                try:
                    url = str(httpx.URL(url).join(resp.headers["location"]))
                except httpx.InvalidURL as exc:
                    raise FetchError("bad_url", f"redirect to {resp.headers['location']!r}") from exc
                continue
            return resp
        raise FetchError("too_many_redirects", url)

    def _allowed(self, host: str, addresses: list[str]) -> list[str]:
        """The addresses of `host` the guard allows, or `FetchError("blocked_address")`."""
        if self.settings.allow_private_addresses:
            return addresses
        allowed = [a for a in addresses if a in self._extra_allowed or address_allowed(a)]
        if not allowed:
            raise FetchError("blocked_address", f"{host} -> {', '.join(addresses)}")
        return allowed

    async def _request(self, method: str, url: str, conditional: dict[str, str]) -> Fetched:
        try:
            target = yarl.URL(url, encoded=True)  # exactly as given: signed URLs break when re-encoded
            async with self._client().request(method, target, headers=conditional, allow_redirects=False) as resp:
                hdrs: dict[str, str] = {}
                for k, v in resp.headers.items():
                    k = k.lower()
                    hdrs[k] = f"{hdrs[k]}, {v}" if k in hdrs else v
                status = resp.status
                bodiless = method == "HEAD" or (status == 304 and bool(conditional))
                declared = hdrs.get("content-length", "")
                if status in REDIRECTS and declared.isdigit() and int(declared) <= 4096:
                    await resp.read()  # next to nothing: reading it keeps the connection alive
                if status in REDIRECTS:
                    return Fetched(url, status, hdrs)
                if status >= 400:
                    raise FetchError(f"http_{status}", url)
                if bodiless:
                    return Fetched(url, status, hdrs)
                limit = self.settings.max_image_bytes
                if declared.isdigit() and int(declared) > limit:
                    raise FetchError("too_large", f"{declared} bytes declared, limit {limit}")
                # Pieces as they arrive (each at most one socket read), joined once at the end: no
                # re-slicing into fixed chunks, no growing buffer copied again and again.
                body: list[bytes] = []
                size = 0
                async for piece in resp.content.iter_any():
                    size += len(piece)
                    if size > limit:
                        raise FetchError("too_large", f"over {limit} bytes")
                    body.append(piece)
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors too
            raise FetchError("timeout", url) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise FetchError("truncated", f"{url}: {exc}") from exc
        except aiohttp.InvalidURL as exc:
            raise FetchError("bad_url", url[:200]) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            raise FetchError("dns", f"{url}: {exc.strerror or exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise FetchError("connection", f"{url}: {exc.strerror or exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError("connection", f"{url}: {exc}") from exc
        data = b"".join(body)
        fmt = sniff_image(data)
        if fmt is None:
            raise FetchError("not_an_image", f"{url}: {hdrs.get('content-type', 'no content type')}, not image bytes")
        return Fetched(url, status, hdrs, data, fmt)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
