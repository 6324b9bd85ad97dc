"""Image downloads for the command line: size, time and redirect limits, and an address guard.

The batch service (async, per-host limits, retries) builds on this in the serving issue.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from lotlens.errors import FetchError

ACCEPT = "image/avif,image/webp,image/jpeg,image/png,image/*;q=0.8"
MAX_REDIRECTS = 5


def is_public_host(host: str) -> bool:
    """True when every address `host` resolves to is public (not loopback, private, link-local...)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise FetchError("dns", f"{host}: {exc}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global or ip.is_multicast:
            return False
    return True


def fetch_bytes(url: str, *, max_bytes: int, timeout: float = 15.0, allow_private: bool = False) -> bytes:
    """GET `url` and return its body.

    Raises:
        FetchError: reason `blocked_address`, `dns`, `timeout`, `connection`, `http_<status>`,
            `too_large`, `too_many_redirects` or `bad_url`.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("bad_url", url)
    with httpx.Client(timeout=timeout, follow_redirects=False, headers={"Accept": ACCEPT}) as client:
        for _ in range(MAX_REDIRECTS + 1):
            host = urlsplit(url).hostname or ""
            if not allow_private and not is_public_host(host):
                raise FetchError("blocked_address", host)
            try:
                with client.stream("GET", url) as resp:
                    if resp.is_redirect:
                        url = str(resp.url.join(resp.headers.get("location", "")))
                        continue
                    if resp.status_code != 200:
                        raise FetchError(f"http_{resp.status_code}", url)
                    declared = resp.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise FetchError("too_large", f"{declared} bytes")
                    body = bytearray()
                    for chunk in resp.iter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchError("too_large", f"over {max_bytes} bytes")
                    return bytes(body)
            except httpx.TimeoutException as exc:
                raise FetchError("timeout", url) from exc
            except httpx.HTTPError as exc:
                raise FetchError("connection", f"{url}: {exc}") from exc
    raise FetchError("too_many_redirects", url)
