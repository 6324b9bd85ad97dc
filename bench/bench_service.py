"""Service throughput against a local CDN: a cold batch (all misses), the same batch warm (all
hits), and a naive loop (GET, full decode, classify, one image at a time, no cache), in one run.

Run: `.venv/bin/python bench/bench_service.py [--n 120]`. Images come from ../shared/data/dev when
present, else synthetic ones; the server sends strong ETags, as most CDNs do. Figures are images/s
and ratios against the naive loop measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import load_inputs, report  # noqa: E402


def start_cdn(images: list[bytes], salted: bool = False) -> tuple[str, ThreadingHTTPServer]:
    """`/<dir>/<i>.jpg`: image i with a strong ETag. With `salted`, the folder name is appended to the
    bytes (decoders ignore what follows the image), so every folder is new content, cold for the
    cache, while the pictures stay real ones (the jobs benchmark)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET(head=True)

        def do_GET(self, head: bool = False) -> None:
            folder, name = self.path.strip("/").rsplit("/", 1)
            body = images[int(name.split(".")[0])] + (folder.encode() if salted else b"")
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
            self.end_headers()
            if not head:
                self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}", httpd


def main() -> int:
    from lotlens.config import Settings
    from lotlens.imaging import decode
    from lotlens.service import Item, Service
    from lotlens.store import Store
    from lotlens.vision import Pipeline

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "dev" / "images")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "service.json")
    args = ap.parse_args()

    data, source = load_inputs(args.images, args.n)
    base, httpd = start_cdn(data)
    urls = [f"{base}/i/{i}.jpg" for i in range(len(data))]
    pipeline = Pipeline.load()
    pipeline.classify([decode(data[0])])  # warm-up
    r: dict[str, object] = {"images": len(data), "source": source, "model": pipeline.version}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), allow_private_addresses=True, verify_fraction=0.0)
        service = Service(settings, Store.from_url(settings.resolved_database_url()), lambda: pipeline)
        items = [Item(u) for u in urls]
        t = time.perf_counter()
        cold = asyncio.run(service.classify("bench", items))
        r["cold_s"] = time.perf_counter() - t
        r["cold_ok"] = sum(x.status == "ok" for x in cold)
        t = time.perf_counter()
        warm = asyncio.run(service.classify("bench", items))
        r["warm_s"] = time.perf_counter() - t
        r["warm_sources"] = sorted({x.source or x.reason or "" for x in warm})
        r["warm_gets"] = service.last_stats.gets
        r["warm_inferences"] = service.last_stats.classified
        service.store.engine.dispose()
    t = time.perf_counter()
    with httpx.Client() as client:
        for u in urls:
            pipeline.classify([decode(client.get(u).content, min_side=None)])
    r["naive_s"] = time.perf_counter() - t
    httpd.shutdown()
    n = len(data)
    for k in ("cold", "warm", "naive"):
        r[f"{k}_images_per_s"] = n / float(r[f"{k}_s"])  # type: ignore[arg-type]
    r["cold_vs_naive"] = float(r["naive_s"]) / float(r["cold_s"])  # type: ignore[arg-type]
    r["warm_vs_naive"] = float(r["naive_s"]) / float(r["warm_s"])  # type: ignore[arg-type]
    report(r, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
