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


def address_allowed(address: str) -> bool:
    """True for public unicast addresses; loopback, private, link-local, multicast, reserved: False."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError("dns", f"{host}: {exc.strerror}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


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

    async def get(self, url: str) -> Fetched:
        """GET `url`: the body within the byte limit, and it must be an image by its bytes."""
        return await self._with_retries(url, "GET")

    async def _with_retries(self, url: str, method: str) -> Fetched:
        attempts = self.settings.fetch_retries + 1
        for attempt in range(attempts):
            try:
                async with asyncio.timeout(self.settings.fetch_total_timeout):
                    return await self._follow(url, method)
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

    async def _follow(self, url: str, method: str) -> Fetched:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FetchError("bad_url", url)
            host = parts.hostname
            async with self._global, self._per_host[host]:
                resp = await self._request(method, parts)
            if resp.status in (301, 302, 303, 307, 308) and "location" in resp.headers:
                url = str(httpx.URL(url).join(resp.headers["location"]))
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

    async def _request(self, method: str, parts: SplitResult) -> Fetched:
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._pinned(host, port)
        netloc = f"[{address}]" if ":" in address else address
        target = urlunsplit((parts.scheme, f"{netloc}:{port}", parts.path or "/", parts.query, ""))
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1]}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        url = urlunsplit(parts)
        try:
            async with self._client.stream(method, target, headers=headers, extensions=extensions) as resp:
                hdrs = {k.lower(): v for k, v in resp.headers.items()}
                if resp.is_redirect:
                    return Fetched(url, resp.status_code, hdrs)
                if resp.status_code >= 400:
                    raise FetchError(f"http_{resp.status_code}", url)
                if method == "HEAD":
                    return Fetched(url, resp.status_code, hdrs)
                limit = self.settings.max_image_bytes
                declared = hdrs.get("content-length", "")
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
