"""The first thing a request meets: a request id is given, the API key is checked before the body is read, and the body
is capped while it streams in (`LOTLENS_MAX_BODY_BYTES`), so a huge or keyless request costs a few
milliseconds, never seconds of parsing on the event loop."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.datastructures import Headers

from lotlens import logs
from lotlens.api.throttle import AuthThrottle, client_address
from lotlens.config import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# After an early answer, the rest of the body is read and dropped (so that the client sees the
# answer, not a reset connection) within these bounds, then the connection is closed.
DRAIN_BYTES = 256 * 1024 * 1024
DRAIN_SECONDS = 2.0
JOB_BYTES_PER_IMAGE = 1024


def _with_request_id(send: Send, rid: str) -> Send:
    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
        await send(message)

    return send_with_id


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _problem(status: int, code: str, detail: str, extra: Sequence[tuple[bytes, bytes]]) -> tuple[Message, Message]:
    body = json.dumps({"type": "about:blank", "status": status, "code": code, "detail": detail}).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()), *extra]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


class RequestGuard:
    """ASGI middleware: early 401 for `/v1/` without a valid key, 429 for an address past its failed
    keys (`lotlens.api.throttle`), 413 past the body limit.

    Args:
        app: the ASGI app it guards.
        settings: `max_body_bytes`, and `api_keys` (none configured: no key is needed).
        key_ok: token -> whether it is a configured key (constant-time, the API's own check).
        throttle: failed keys per client address (the pages' sign-in shares it).
    """

    def __init__(
        self, app: ASGIApp, settings: Settings, key_ok: Callable[[str], bool], throttle: AuthThrottle | None = None
    ) -> None:
        self.app = app
        self.throttle = throttle if throttle is not None else AuthThrottle()
        self.limit = settings.max_body_bytes
        # A job may list up to `LOTLENS_MAX_JOB` images: its body may hold about 1 kB a URL.
        self.job_limit = max(settings.max_body_bytes, settings.max_job * JOB_BYTES_PER_IMAGE)
        self.needs_key = bool(settings.api_keys)
        self.key_ok = key_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        # A request id (the caller's `X-Request-ID`, else a new one) on every log line of the request
        # and in the answer, early answers included.
        rid = logs.accept_request_id(headers.get("x-request-id"))
        token = logs.request_id.set(rid)
        try:
            await self._guarded(scope, receive, _with_request_id(send, rid), headers)
        finally:
            logs.request_id.reset(token)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        if self.needs_key and scope["path"].startswith("/v1/"):
            address = client_address(scope.get("client"))
            wait = self.throttle.retry_after(address)
            if wait:
                await self._answer(
                    send, receive, 429, "too_many_failures",
                    "too many requests with a missing or unknown API key from this address: try again later",
                    [(b"retry-after", str(math.ceil(wait)).encode())],
                )  # fmt: skip
                return
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not self.key_ok(token):
                self.throttle.failed(address)
                await self._answer(
                    send, receive, 401, "unauthorized", "missing or unknown API key (Authorization: Bearer <key>)",
                    [(b"www-authenticate", b"Bearer")],
                )  # fmt: skip
                return
        limit = self.job_limit if scope["path"] == "/v1/jobs" else self.limit
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._answer(send, receive, 413, "too_large", f"the body may hold at most {limit} bytes")
            return
        if declared is None and headers.get("transfer-encoding"):
            # A body that says nothing of its size: read it here, up to the limit, then hand it on.
            body, more = bytearray(), True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > limit:
                    await self._answer(send, receive, 413, "too_large", f"the body may hold at most {limit} bytes")
                    return
            await self.app(scope, _replay(bytes(body), receive), send)
            return
        await self.app(scope, receive, send)

    async def _answer(
        self,
        send: Send,
        receive: Receive,
        status: int,
        code: str,
        detail: str,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        start, body = _problem(status, code, detail, [(b"connection", b"close"), *extra])
        await send(start)
        await send(body)
        drained, until = 0, time.monotonic() + DRAIN_SECONDS
        while drained < DRAIN_BYTES and time.monotonic() < until:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
