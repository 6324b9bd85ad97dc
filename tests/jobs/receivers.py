"""What the job tests talk to: the brokers (skipped where absent, never under CI=true); a webhook
receiver that checks signatures itself; an image host whose one path waits for the test to open a
gate, or counts downloads in flight."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from httpserver import IMAGE

BROKERS = {
    "amqp": os.environ.get("LOTLENS_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
    "redis": os.environ.get("LOTLENS_TEST_REDIS", "redis://127.0.0.1:6379/15"),
}
SECRET_KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()


@dataclass
class Call:
    headers: dict[str, str]
    body: bytes

    @property
    def signature_ok(self) -> bool:
        """Checked as a receiver following the Standard Webhooks spec would, from the raw body."""
        signed = f"{self.headers['webhook-id']}.{self.headers['webhook-timestamp']}.".encode() + self.body
        expected = base64.b64encode(hmac.new(SECRET_KEY, signed, hashlib.sha256).digest()).decode()
        return any(hmac.compare_digest(expected, s.split(",", 1)[1]) for s in self.headers["webhook-signature"].split())


@dataclass
class Receiver:
    """Answers 500 to the first `fail` calls, then 204; `accepted` is set on the first 204."""

    url: str = ""
    fail: int = 0
    calls: list[Call] = field(default_factory=list)
    accepted: threading.Event = field(default_factory=threading.Event)


@dataclass
class Host:
    """/gate.jpg waits until `gate` opens (`entered` says it got there); /count.jpg counts the
    downloads in flight (`peak`), each held until `release` opens."""

    url: str = ""
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: threading.Condition = field(default_factory=threading.Condition)


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def receiver(fail: int = 0) -> Iterator[Receiver]:
    rec = Receiver(fail=fail)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            rec.calls.append(Call({k.lower(): v for k, v in self.headers.items()}, body))
            status = 500 if len(rec.calls) <= rec.fail else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if status == 204:
                rec.accepted.set()

    with _serve(Handler) as url:
        rec.url = url
        yield rec


@contextmanager
def image_host() -> Iterator[Host]:
    host = Host()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:  # no validators: the service has to GET every image
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(IMAGE)))
            self.end_headers()

        def do_GET(self) -> None:
            if self.path.startswith("/gate"):
                host.entered.set()
                host.gate.wait(30)
            elif self.path.startswith("/count"):
                with host.waiting:
                    host.in_flight += 1
                    host.peak = max(host.peak, host.in_flight)
                    host.waiting.notify_all()
                host.release.wait(30)
                with host.waiting:
                    host.in_flight -= 1
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(IMAGE)))
            self.end_headers()
            self.wfile.write(IMAGE)

    with _serve(Handler) as url:
        host.url = url
        yield host


def missing(what: str, why: object) -> None:
    """Skip for a service not running here; under CI=true fail instead, CI must test it for real."""
    if os.environ.get("CI"):
        raise RuntimeError(f"{what} is needed in CI: {why}")
    pytest.skip(f"{what} not reachable: {why}")


def broker(kind: str) -> str:
    """The broker URL of `kind`, once a TCP connection to it succeeds."""
    from urllib.parse import urlsplit

    url = BROKERS[kind]
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 5672), timeout=3).close()
    except OSError as exc:
        missing(f"{kind} broker at {parts.hostname}:{parts.port}", exc)
    return url
