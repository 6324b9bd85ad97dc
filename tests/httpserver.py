"""A real local HTTP server for fetcher and service tests: an image and every failure mode."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from lotlens.train.generate import banner

from synth import car, jpeg

IMAGE = jpeg(car("Red", "white", 1))
HITS: dict[str, int] = {}
ETAGS: dict[str, str] = {}  # path -> the ETag /img/ serves it with (tests that change headers in place)
RAW_TARGETS: list[str] = []  # request targets of /raw/, exactly as they reached the server
RAW_HEADERS: list[dict[str, str]] = []  # request headers of /raw/, as they reached the server
NAMES: dict[str, str] = {}  # path -> the IMAGES entry /img/ serves there (tests that change bytes in place)
SENT: dict[str, int] = {}  # "GET /path 304" -> count: what the answers were (conditional GETs)
PEERS: list[tuple[str, int]] = []  # (path, client port) of each request: a reused connection keeps its port
LAST_MODIFIED = "Mon, 02 Nov 2026 10:00:00 GMT"


def _reencoded(data: bytes) -> bytes:
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    im.resize((im.width * 9 // 10, im.height * 9 // 10)).save(buf, "JPEG", quality=70)
    return buf.getvalue()


def bomb_png() -> bytes:
    """A small PNG that declares 30000 x 30000 pixels (a decompression bomb)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buf, "PNG")
    return buf.getvalue()


class Handler(BaseHTTPRequestHandler):
    """Serves an image and every failure mode the fetcher must survive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as CDNs do: a body written after its headers is not held back

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:  # noqa: C901 (one branch per failure mode)
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        HITS[self.command + " " + path] = HITS.get(self.command + " " + path, 0) + 1
        PEERS.append((path, self.client_address[1]))
        if path.startswith("/img/"):
            # /img/<any>?name=<IMAGES key>[&etag=<strong or W/ weak>][&lm=1][&salt=<s>]: chosen bytes and headers
            etag = ETAGS.get(path) or (query["etag"][0] if "etag" in query else None)
            extra = {"ETag": etag} if etag else {}
            body = IMAGES[NAMES.get(path) or query.get("name", ["car"])[0]]
            if "salt" in query:  # new bytes, same picture: decoders ignore what follows the JPEG's end
                body += query["salt"][0].encode()
            self._send(200, body, "image/jpeg", head, extra, "lm" in query, conditional="deaf" not in query)
        elif path.startswith("/raw/"):
            RAW_TARGETS.append(self.path)
            RAW_HEADERS.append({k.lower(): v for k, v in self.headers.items()})
            self._send(200, IMAGE, "image/jpeg", head)
        elif path in ("/car.jpg", "/etag/car.jpg"):
            self._send(200, IMAGE, "image/jpeg", head, {"ETag": '"v1"'} if path.startswith("/etag") else {})
        elif path == "/weak/car.jpg":
            self._send(200, IMAGE, "image/jpeg", head, {"ETag": 'W/"v1"'})
        elif path == "/wrong-type.jpg":
            self._send(200, IMAGE, "text/html", head)
        elif path == "/html.jpg":
            self._send(200, b"<!doctype html><html><body>Not found</body></html>", "image/jpeg", head)
        elif path == "/gzip.jpg":  # compressed although not asked to be: 1 MB of zeros in 1 kB
            import gzip

            self._send(200, gzip.compress(b"\0" * 1_000_000), "image/jpeg", head, {"Content-Encoding": "gzip"})
        elif path == "/bomb.png":
            self._send(200, BOMB, "image/png", head)
        elif path == "/missing.jpg":
            self._send(404, b"nope", "text/plain", head)
        elif path == "/error.jpg":
            self._send(500, b"boom", "text/plain", head)
        elif path == "/flaky.jpg":
            n = HITS[self.command + " " + path]
            self._send(503 if n % 3 else 200, IMAGE if n % 3 == 0 else b"busy", "image/jpeg", head)
        elif path == "/big.jpg":
            self._send(200, b"\xff\xd8\xff" + b"\0" * 50_000, "image/jpeg", head)
        elif path == "/big-chunked.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"\xff" * 1000)
            self.close_connection = True
        elif path == "/truncated.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(IMAGE)))
            self.end_headers()
            self.wfile.write(IMAGE[: len(IMAGE) // 3])
            self.close_connection = True
        elif path == "/reset.jpg":
            import socket
            import struct

            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif path == "/loop.jpg":
            self._redirect("/loop.jpg")
        elif path == "/hop.jpg":
            self._redirect("/car.jpg")
        elif path == "/redirect":
            self._redirect(query["to"][0])
        elif path == "/slow.jpg":  # ?wait=<seconds>: 1.5 unless told
            threading.Event().wait(float(query.get("wait", ["1.5"])[0]))
            self._send(200, IMAGE, "image/jpeg", head)
        else:
            self._send(404, b"", "text/plain", head)

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str,
        head: bool = False,
        extra: dict[str, str] | None = None,
        last_modified: bool = True,
        conditional: bool = True,
    ) -> None:
        """Send `body`; a conditional GET whose validator still matches gets 304 and no body (RFC 9110:
        If-None-Match first, If-Modified-Since only without it), unless `conditional` is off (a server
        that ignores validators, as some do)."""
        etag = (extra or {}).get("ETag")
        inm, ims = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
        if inm is not None:
            unchanged = etag is not None and inm.strip() == etag
        else:
            unchanged = ims is not None and last_modified and ims.strip() == LAST_MODIFIED
        not_modified = status == 200 and conditional and unchanged
        sent = f"{self.command} {urlsplit(self.path).path} {304 if not_modified else status}"
        SENT[sent] = SENT.get(sent, 0) + 1
        if not_modified:
            self.send_response(304)
            if etag:
                self.send_header("ETag", etag)
            if last_modified:
                self.send_header("Last-Modified", LAST_MODIFIED)
            self.end_headers()
            return
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if last_modified:
            self.send_header("Last-Modified", LAST_MODIFIED)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _redirect(self, to: str) -> None:
        self.send_response(302)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()


BOMB = bomb_png()
IMAGES = {
    "car": IMAGE,
    "placeholder": jpeg(banner(random.Random(1))),  # "photo coming soon": the bundled model says Placeholder
    "car-reencoded": _reencoded(IMAGE),
    "blue": jpeg(car("Blue", "scene", 2)),
    "yellow": jpeg(car("Yellow", "white", 3)),
    "bomb": BOMB,
    "tiny": jpeg(car("Green", "white", 4, size=(48, 32))),
    "corrupt": IMAGE[:200] + b"\0" * 50,
}


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up on purpose (size limits) are not errors here


def serve(address: str) -> Iterator[str]:
    httpd = QuietServer((address, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://{address}:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def serve_app(app: Any) -> Iterator[str]:
    """An ASGI app served for real by uvicorn on a free loopback port, in a thread (`lotlens serve`)."""
    import socket
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
