"""Service throughput against a local CDN, in one run: a cold batch (all misses), the same batch
warm (every URL known: conditional GETs answered 304), the same batch once the host has URL trust
(answered from the URL alone, the random sample still checked), and a naive loop (GET, full decode,
classify, one image at a time, no cache); then the store's lookup rate and the peak memory of a
service with its models loaded through a 1,000-image batch.

The service's model is loaded as a serving process loads it (`Champion`: two model calls at once,
each with half the cores, no spinning threads). The naive loop is the reference pipeline as one
caller would run it, in a process of its own: `Pipeline.load()` (all cores per call), full decode, the detector on every
photo not on white (`frame_gate=False`). `naive_gated` is the same loop with the frame head
skipping the detector where it says the vehicle fills the frame, as the service does:
`cold_vs_naive_gated` shows what the service gains beyond that shortcut.

Run: `.venv/bin/python bench/bench_service.py [--n 120]`. Images come from ../shared/data/dev when
present, else synthetic ones; the server sends strong ETags and answers conditional GETs, as most
CDNs do, and each URL folder salts the bytes (new content for the cache, the same pictures).
Figures are images/s and ratios against the naive loop measured in the same run. Cold batches and
naive loops take turns, `--rounds` of each (each cold batch on a folder of its own, so all misses),
and each figure is the median of its rounds: a machine whose load drifts moves both sides alike.
Both sides are warmed first (the service by a small cold batch of other URLs: its pools, the
model's batch shapes, the store's tables; the naive loop by one image). Warm and trusted times are
the median of `--rounds` scrapes of the last cold folder. `*_cpu_ms_per_image` is this process's CPU time
(all its threads; the CDN runs in its own process): less sensitive to the machine's load than the
wall times. The `name value` lines at the end are the issue's figures:

    cold_vs_naive, warm_vs_naive, trusted_vs_naive
    lookup_keys_per_s   the lower of SQLite and PostgreSQL: 100,000 stored URLs (each with its header
                        key and validators: the warm path's lookup) looked up in batches of 1,000
    peak_rss_mib        peak RSS (VmHWM) of a separate process: the model loaded, one cold batch of
                        `--rss-images` dev images under salted URLs (new bytes each), SQLite store

`--profile warm|trusted` prints where one more such scrape spends its time (needs pyinstrument).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import load_inputs, report  # noqa: E402

LOOKUP_KEYS = 100_000
LOOKUP_BATCH = 1000


def cdn_handler(images: list[bytes], salted: bool) -> type[BaseHTTPRequestHandler]:
    """`/<dir>/<i>.jpg`: image i with a strong ETag; a GET whose If-None-Match holds that ETag gets
    304. With `salted`, the folder name is appended to the bytes (decoders ignore what follows the
    image), so every folder is new content, cold for the cache, while the pictures stay real ones.

    The sockets send at once (TCP_NODELAY), as CDNs' servers do (nginx's `tcp_nodelay on`). Without
    it the body, written after the headers, waited for the client's delayed ACK of the headers:
    about 40 ms on each GET of a kept-alive connection, which made the naive loop's sequential GETs
    cost 35 ms an image and the warm path's few whole GETs 37 ms each (before 2026-12-03 21:30)."""
    etags: dict[tuple[int, str], str] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # see above

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET(head=True)

        def do_GET(self, head: bool = False) -> None:
            folder, name = self.path.strip("/").rsplit("/", 1)
            i, salt = int(name.split(".")[0]), folder if salted else ""
            body = images[i] + salt.encode()
            etag = etags.get((i, salt)) or etags.setdefault((i, salt), f'"{hashlib.sha1(body).hexdigest()}"')
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            if not head:
                self.wfile.write(body)

    return Handler


def _serve_cdn(images: list[bytes], salted: bool, port: Any) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), cdn_handler(images, salted))
    httpd.daemon_threads = True
    port.put(httpd.server_address[1])
    httpd.serve_forever()


class Cdn:
    """The CDN's process: a process of its own, as a real CDN is not in the service's (nor its GIL)."""

    def __init__(self, process: Any) -> None:
        self.process = process

    def shutdown(self) -> None:
        self.process.terminate()
        self.process.join()


def start_cdn(images: list[bytes], salted: bool = False) -> tuple[str, Cdn]:
    """The local CDN of `cdn_handler`, started in a new process (spawned: the caller may hold threads)."""
    ctx = multiprocessing.get_context("spawn")
    port = ctx.Queue()
    process = ctx.Process(target=_serve_cdn, args=(images, salted, port), daemon=True)
    process.start()
    return f"http://127.0.0.1:{port.get(timeout=120)}", Cdn(process)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database for the run, dropped after it."""
    import psycopg

    name = f"lotlens_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


WARMUP_IMAGES = 8


def scrapes(
    service: Any,
    folder_items: Callable[[str], list[Any]],
    naive_round: Callable[[int], dict[str, Any]],
    rounds: int,
    profile: str | None,
) -> dict[str, Any]:
    """A warm-up batch, then `rounds` cold batches (each on a new folder) taking turns with
    `naive_round`; then `rounds` warm scrapes of the last cold folder (no URL trust), URL trust
    earned and `rounds` trusted scrapes; all on one event loop with the service's one client (as
    `lotlens serve` runs them). Times are the medians of the rounds."""
    from lotlens.service import BatchStats

    r: dict[str, Any] = {}
    items: list[Any] = []

    async def timed(name: str) -> tuple[float, BatchStats]:
        t, cpu = time.perf_counter(), time.process_time()
        results, stats = await service.classify_with_stats("bench", items)
        dt = time.perf_counter() - t
        r[f"{name}_cpu_ms_per_image"] = (time.process_time() - cpu) * 1000 / len(items)  # the last one's
        r.setdefault(f"{name}_sources", sorted({x.source or x.reason or "" for x in results}))
        return dt, stats

    async def profiled(name: str) -> None:
        from pyinstrument import Profiler

        with Profiler(async_mode="enabled", interval=0.0005) as p:
            await service.classify_with_stats("bench", items)
        print(f"--- profile of one {name} scrape", file=sys.stderr)
        p.print(file=sys.stderr, show_all=False)

    async def run() -> None:
        nonlocal items
        async with service:
            await service.classify_with_stats("bench", folder_items("warmup")[:WARMUP_IMAGES])
            cold, naives = [], []
            for k in range(rounds):
                items = folder_items(f"cold{k}")
                dt, stats = await timed("cold")
                cold.append(dt)
                r["cold_ok"] = stats.classified
                naives.append(await asyncio.to_thread(naive_round, k))
            r["cold_s"], r["cold_rounds_s"] = statistics.median(cold), cold
            for key in naives[0]:
                r[key] = statistics.median(nv[key] for nv in naives)
            r["naive_rounds_s"] = [nv["naive_s"] for nv in naives]
            warm = [await timed("warm") for _ in range(rounds)]
            r["warm_s"] = statistics.median(dt for dt, _ in warm)
            r["warm_not_modified"], r["warm_gets"] = warm[-1][1].not_modified, warm[-1][1].gets
            r["warm_inferences"] = warm[-1][1].classified
            if profile == "warm":
                await profiled("warm")
            # One scrape of the batch found unchanged earns the trust here (1,000 checks by default).
            service.settings = service.settings.model_copy(update={"url_trust_checks": len(items) // 2})
            _, earning = await timed("earning")
            r["url_trust_earned"] = earning.url_trust_earned
            trusted = [await timed("trusted") for _ in range(rounds)]
            r["trusted_s"] = statistics.median(dt for dt, _ in trusted)
            r["trusted_url_hits"] = trusted[-1][1].url_hits
            r["trusted_checked"] = trusted[-1][1].gets  # the verification sample
            if profile == "trusted":
                await profiled("trusted")

    asyncio.run(run())
    return r


def lookup_rate(url: str, keys: int, batch: int) -> float:
    """URLs looked up per second: `keys` stored URLs, asked in shuffled batches of `batch`."""
    from lotlens.store import Store
    from lotlens.store.records import UrlSeen

    store = Store.from_url(url)
    try:
        contents = [f"c:{i:064x}" for i in range(1000)]
        store.put_classified([(k, None, None, None, None) for k in contents], [])
        urls = [f"https://cdn{i % 7}.example/stock/{i}/{i * 7919 % 100_003}.jpg" for i in range(keys)]
        for i in range(0, keys, 5000):
            store.learn_urls(
                [
                    UrlSeen(u, u.split("/")[2], contents[j % 1000], None, True, f"h:{j:064x}", f'"{j}"', None)
                    for j, u in enumerate(urls[i : i + 5000], start=i)
                ],
                url_trust_checks=0,
            )
        random.Random(0).shuffle(urls)
        store.lookup_urls(urls[:batch])  # connect and warm the statement cache
        t = time.perf_counter()
        found = 0
        for i in range(0, keys, batch):
            found += len(store.lookup_urls(urls[i : i + batch]))
        dt = time.perf_counter() - t
        assert found == keys, f"{found} of {keys} found"
        return keys / dt
    finally:
        store.engine.dispose()


def naive(folder: str, n: int) -> dict[str, Any]:
    """The naive loop over `n` images of the CDN folder at `folder` (called with --naive-probe): GET,
    full decode, the reference pipeline one image at a time; then the same with the frame head."""
    from lotlens.imaging import decode
    from lotlens.vision import Pipeline

    urls = [f"{folder}/{i}.jpg" for i in range(n)]
    reference = Pipeline.load()  # one caller: all cores per call, onnxruntime's defaults
    r: dict[str, Any] = {}
    with httpx.Client() as client:
        reference.classify([decode(client.get(urls[0]).content)])  # warm-up
        for name, gate in (("naive", False), ("naive_gated", True)):
            t, cpu = time.perf_counter(), time.process_time()
            for u in urls:
                reference.classify([decode(client.get(u).content, min_side=None)], frame_gate=gate)
            r[f"{name}_s"] = time.perf_counter() - t
            r[f"{name}_cpu_ms_per_image"] = (time.process_time() - cpu) * 1000 / n
    return r


def high_water_mib(field: str = "VmHWM") -> float:
    """This process's peak RSS: VmHWM on Linux (ru_maxrss would include the RSS of the parent this
    process was forked from before its exec: the benchmark itself, model loaded); `VmRSS`: now."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss(images: Path, n: int) -> dict[str, Any]:
    """This process's peak RSS through one cold batch of `n` images (called with --rss-probe)."""
    from lotlens.batching import TRIM_AFTER
    from lotlens.champion import Champion
    from lotlens.config import Settings
    from lotlens.service import Item, Service
    from lotlens.store import Store

    data, _ = load_inputs(images, min(n, 745))
    base, httpd = start_cdn(data, salted=True)
    urls = [f"{base}/r{k // len(data)}/{k % len(data)}.jpg" for k in range(n)]
    del data  # the CDN process holds its own copy: what follows is the server alone
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), allow_private_addresses=True)
        store = Store.from_url(settings.resolved_database_url())
        pipeline = Champion(settings, store)()  # the model as a serving process loads it
        loaded = high_water_mib()
        service = Service(settings, store, lambda: pipeline)

        async def batch_then_idle() -> tuple[list[Any], float, float]:
            t = time.perf_counter()
            results = await service.classify("rss", [Item(u) for u in urls])
            dt = time.perf_counter() - t
            await asyncio.sleep(TRIM_AFTER + 0.5)  # idle: the batcher gives the freed heap back
            return results, dt, high_water_mib("VmRSS")

        results, dt, idle = asyncio.run(batch_then_idle())
    httpd.shutdown()
    return {
        "rss_images": n,
        "rss_ok": sum(x.status == "ok" for x in results),
        "rss_batch_s": dt,
        "rss_after_load_mib": loaded,
        "peak_rss_mib": high_water_mib(),
        "rss_idle_after_mib": idle,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "dev" / "images")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3, help="cold/naive, warm and trusted rounds (their medians)")
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL admin URL")
    ap.add_argument("--lookup-keys", type=int, default=LOOKUP_KEYS)
    ap.add_argument("--rss-images", type=int, default=1000, help="images in the memory probe's batch (0: skip)")
    ap.add_argument("--rss-probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--naive-probe", metavar="FOLDER_URL", help=argparse.SUPPRESS)
    ap.add_argument("--profile", choices=["warm", "trusted"])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "service.json")
    args = ap.parse_args()
    if args.rss_probe:
        print(json.dumps(peak_rss(args.images, args.rss_images)))
        return 0
    if args.naive_probe:
        print(json.dumps(naive(args.naive_probe, args.n)))
        return 0

    from lotlens.champion import Champion
    from lotlens.config import Settings
    from lotlens.imaging import decode
    from lotlens.service import Item, Service
    from lotlens.store import Store

    data, source = load_inputs(args.images, args.n)
    base, httpd = start_cdn(data, salted=True)
    n = len(data)
    r: dict[str, Any] = {"images": n, "source": source}

    def folder_items(folder: str) -> list[Any]:
        return [Item(f"{base}/{folder}/{i}.jpg") for i in range(n)]

    def naive_round(k: int) -> dict[str, Any]:
        # The naive loop in a process of its own, as a plain script runs: nothing of the service (its
        # threads, its model, its malloc settings) shares the process with it.
        probe = [sys.executable, __file__, "--naive-probe", f"{base}/naive{k}", "--n", str(n)]
        out = subprocess.run(probe, capture_output=True, text=True, check=True)
        found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return found

    with tempfile.TemporaryDirectory() as tmp:
        # Default settings: 2% of known answers are fetched whole and their bytes checked.
        settings = Settings(data_dir=Path(tmp), allow_private_addresses=True, url_trust_checks=0)
        store = Store.from_url(settings.resolved_database_url())
        pipeline = Champion(settings, store)()  # the model as a serving process loads it
        pipeline.classify([decode(data[0])])  # warm-up
        r["model"] = pipeline.version
        service = Service(settings, store, lambda: pipeline)
        service.rng.seed(0)
        r |= scrapes(service, folder_items, naive_round, args.rounds, args.profile)
        service.store.engine.dispose()
    httpd.shutdown()
    for k in ("cold", "warm", "trusted", "naive", "naive_gated"):
        r[f"{k}_images_per_s"] = n / float(r[f"{k}_s"])
    for k in ("cold", "warm", "trusted"):
        r[f"{k}_vs_naive"] = float(r["naive_s"]) / float(r[f"{k}_s"])
    r["cold_vs_naive_gated"] = float(r["naive_gated_s"]) / float(r["cold_s"])

    with tempfile.TemporaryDirectory() as tmp:
        r["lookup_keys_per_s_sqlite"] = lookup_rate(f"sqlite:///{tmp}/lookup.db", args.lookup_keys, LOOKUP_BATCH)
    with fresh_database(args.db) as pg:
        r["lookup_keys_per_s_postgresql"] = lookup_rate(pg, args.lookup_keys, LOOKUP_BATCH)
    r["lookup_keys_per_s"] = min(r["lookup_keys_per_s_sqlite"], r["lookup_keys_per_s_postgresql"])

    if args.rss_images:
        probe = [sys.executable, __file__, "--rss-probe", "--rss-images", str(args.rss_images)]
        out = subprocess.run([*probe, "--images", str(args.images)], capture_output=True, text=True, check=True)
        r |= json.loads(out.stdout.strip().splitlines()[-1])

    report(r, args.out)
    print()
    keys = ("cold_vs_naive", "cold_vs_naive_gated", "warm_vs_naive", "trusted_vs_naive")
    for k in (*keys, "lookup_keys_per_s", "peak_rss_mib"):
        if k in r:
            print(f"{k} {r[k]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
