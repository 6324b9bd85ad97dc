"""Job webhooks as the Standard Webhooks spec signs them, with retries under one `webhook-id`.

`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the base64 part
of `LOTLENS_WEBHOOK_SECRET` (`whsec_<base64>`). The URL passes the same address guard as image
URLs (`lotlens.fetch.checked_url`, then `address_allowed` on the addresses the resolver gives), and the request goes to
the address that was checked, so a DNS answer cannot change between check and connect.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlunsplit

import httpx

from lotlens.config import Settings
from lotlens.errors import FetchError
from lotlens.fetch import USER_AGENT, address_allowed, checked_url, system_resolver
from lotlens.jobs.run import status_dict
from lotlens.store.jobs import JobStore

EVENT = "job.finished"


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_<base64>` secret.

    Raises:
        ValueError: the secret is not base64 after its prefix.
    """
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as exc:
        raise ValueError("LOTLENS_WEBHOOK_SECRET must be whsec_<base64>") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one try."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds between try `attempt` and the next: `webhook_backoff`, then x4 each time."""
    return float(settings.webhook_backoff * 4 ** (attempt - 1))


async def guarded(settings: Settings, url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(the URL aimed at the checked address, the Host header, httpx extensions) for `url`.

    Raises:
        FetchError: `bad_url` (not http(s) with a host), `dns`, or `blocked_address` (loopback,
            private, link-local or reserved, unless `allow_private_addresses`).
    """
    parts = checked_url(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        addresses = await system_resolver(host, port)
    allowed = [a for a in addresses if settings.allow_private_addresses or address_allowed(a)]
    if not allowed:
        raise FetchError("blocked_address", f"{host} -> {', '.join(addresses)}")
    address = allowed[0]
    netloc = f"[{address}]" if ":" in address else address
    target = urlunsplit((parts.scheme, f"{netloc}:{port}", parts.path or "/", parts.query, ""))
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return target, {"Host": parts.netloc.rsplit("@", 1)[-1]}, extensions


def check_url(settings: Settings, url: str) -> None:
    """Refuse a webhook URL the guard would refuse (blocking: it resolves the host).

    Raises:
        FetchError: see `guarded`.
    """
    asyncio.run(guarded(settings, url))


async def post(
    settings: Settings, url: str, msg_id: str, body: bytes, transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, Any]:
    """One try: POST the signed body; the answer as the job status shows it (`status_code` or `error`)."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    answer: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "status_code": None, "error": None}
    if not secret:
        answer["error"] = "no LOTLENS_WEBHOOK_SECRET configured"
        return answer
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }
    try:
        target, host, extensions = await guarded(settings, url)
        async with httpx.AsyncClient(
            timeout=settings.webhook_timeout, follow_redirects=False, transport=transport
        ) as client:
            resp = await client.post(target, content=body, headers=headers | host, extensions=extensions)
        answer["status_code"] = resp.status_code
    except FetchError as exc:
        answer["error"] = exc.reason
    except httpx.TimeoutException:
        answer["error"] = "timeout"
    except httpx.HTTPError as exc:
        answer["error"] = f"connection: {type(exc).__name__}"
    return answer


def payload(data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"type": EVENT, "timestamp": datetime.now(UTC).isoformat(), "data": data}, separators=(",", ":")
    ).encode()


def deliver(
    jobs: JobStore, settings: Settings, job_id: str, attempt: int, transport: httpx.AsyncBaseTransport | None = None
) -> float | None:
    """Try number `attempt` of a finished job's webhook. Returns the seconds to wait before the next
    try, or None when there is none (delivered, given up, or this try was already made elsewhere).
    Blocking (it runs its own event loop)."""
    job = jobs.get(job_id)
    if job is None or not job.terminal or not job.webhook_url or job.webhook_status != "pending":
        return None
    if job.webhook_attempts != attempt - 1:
        return None  # a duplicate task: that try was made already
    assert job.webhook_id is not None
    answer = asyncio.run(post(settings, job.webhook_url, job.webhook_id, payload(status_dict(job)), transport))
    code = answer["status_code"]
    delivered = code is not None and 200 <= code < 300
    last = attempt >= settings.webhook_tries or answer["error"] in ("bad_url", "no LOTLENS_WEBHOOK_SECRET configured")
    if not jobs.record_webhook(job_id, attempt, answer, delivered, last) or delivered or last:
        return None
    return backoff(settings, attempt)
