"""Shared fixtures: the dev image set (read in place, never copied) and the loaded bundled model."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from synth import car, jpeg

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dev_data() -> Path:
    """`../shared/data/dev` beside the checkout (or `$LOTLENS_DEV_DATA`); skips where it is absent."""
    path = Path(os.environ.get("LOTLENS_DEV_DATA", REPO.parent / "shared" / "data" / "dev"))
    if not (path / "manifest.csv").is_file():
        pytest.skip(f"dev image set not found at {path} (set LOTLENS_DEV_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def pipeline():
    """The bundled model, loaded once for the whole session."""
    from lotlens.vision import Pipeline

    return Pipeline.load()


IMAGE = jpeg(car("Red", "white", 1))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path
        if path == "/car.jpg":
            self._send(200, IMAGE, "image/jpeg")
        elif path == "/missing.jpg":
            self._send(404, b"nope", "text/plain")
        elif path == "/error.jpg":
            self._send(500, b"boom", "text/plain")
        elif path == "/big.jpg":
            self._send(200, b"\xff" * 50_000, "image/jpeg")
        elif path == "/big-chunked.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"\xff" * 1000)
            self.close_connection = True
        elif path == "/loop.jpg":
            self._redirect("/loop.jpg")
        elif path == "/hop.jpg":
            self._redirect("/car.jpg")
        elif path == "/slow.jpg":
            threading.Event().wait(2)
            self._send(200, IMAGE, "image/jpeg")
        else:
            self._send(404, b"", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, to: str) -> None:
        self.send_response(302)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up on purpose (size limits) are not errors here


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """A real local HTTP server with an image and every failure mode the fetcher must survive."""
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
