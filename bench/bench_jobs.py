"""Jobs on Celery workers: the same cold job with 1 and with 2 `lotlens worker --concurrency 1` (each
`LOTLENS_THREADS=1`: one onnxruntime thread per model call, two calls at once), images/s and their
ratio, and `/healthz` p50/p99 on a `lotlens serve` while it runs; the same job again (warm: every
image answered from the cache after a conditional GET); then, optionally, `/healthz` during one
large `/v1/classify`.

Run: `.venv/bin/python bench/bench_jobs.py [--n 300] [--classify 1000]` with PostgreSQL and RabbitMQ
running (`--db`, `--broker`). Every run gets a fresh database and data folder, so each first job is
cold: every image is fetched from a local CDN, decoded, classified and stored. Images come from
../shared/data/dev when present, else synthetic ones. Workers are started and warmed up (each has
loaded its model and answered one chunk) before the clock starts.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import load_inputs, report  # noqa: E402
from bench_service import fresh_database, start_cdn  # noqa: E402

LOTLENS = str(Path(sys.executable).parent / "lotlens")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Healthz:
    """Probes /healthz every 50 ms from a thread; latencies in ms."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Healthz:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self._stop.is_set():
                t = time.perf_counter()
                c.get(f"{self.api}/healthz").raise_for_status()
                self.ms.append((time.perf_counter() - t) * 1000)
                self._stop.wait(0.05)

    def figures(self, prefix: str) -> dict[str, object]:
        q = statistics.quantiles(self.ms, n=100) if len(self.ms) > 1 else self.ms * 99
        return {f"{prefix}_healthz_p50_ms": q[49], f"{prefix}_healthz_p99_ms": q[98], f"{prefix}_probes": len(self.ms)}


@contextmanager
def processes(env: dict[str, str], workers: int, logs: Path) -> Iterator[str]:
    """`lotlens serve` and `workers` workers; yields the API's URL once it answers."""
    port = free_port()
    procs = []
    try:
        for i, cmd in enumerate(
            [[LOTLENS, "serve", "--port", str(port)]]
            + [[LOTLENS, "worker", "--concurrency", "1", "--loglevel", "warning"]] * workers
        ):
            with (logs / f"proc-{i}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        cmd, env=os.environ | env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield api
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(60)


def run_job(api: str, urls: list[str]) -> tuple[float, dict[str, object]]:
    """Seconds from submit to done, and the final status."""
    body = {"advertiser": "bench", "images": [{"url": u} for u in urls]}
    # One client for the polls: each `httpx.get` builds a client, and its TLS context (the CA
    # bundle read and parsed) cost about 20 ms of CPU, taken from the workers' two cores.
    with httpx.Client(timeout=60) as client:
        t = time.perf_counter()
        job = client.post(f"{api}/v1/jobs", json=body).json()
        while job["status"] not in ("done", "failed", "cancelled"):
            # Finer polls in the first second: a warm job of a few hundred images ends inside it.
            time.sleep(0.02 if time.perf_counter() - t < 1 else 0.1)
            job = client.get(f"{api}/v1/jobs/{job['id']}").json()
        return time.perf_counter() - t, job


def one_config(args: argparse.Namespace, workers: int, urls: list[str], warm: list[str]) -> dict[str, object]:
    with fresh_database(args.db) as db, tempfile.TemporaryDirectory() as tmp:
        env = {
            "LOTLENS_DATABASE_URL": db,
            "LOTLENS_DATA_DIR": tmp,
            "LOTLENS_BROKER_URL": args.broker,
            "LOTLENS_JOB_QUEUE": f"lotlens-bench-{uuid.uuid4().hex[:8]}",
            "LOTLENS_JOB_CHUNK": str(args.chunk),
            "LOTLENS_THREADS": "1",
            "LOTLENS_ALLOW_PRIVATE_ADDRESSES": "true",
            "LOTLENS_VERIFY_FRACTION": "0",
        }
        subprocess.run([LOTLENS, "db", "upgrade"], env=os.environ | env, check=True, capture_output=True)
        with processes(env, workers, Path(tmp)) as api:
            # Warm-up: a chunk a worker (prefetch 1 hands one to each), so the clock starts on loaded models.
            run_job(api, warm[: workers * args.chunk])
            with Healthz(api) as h:
                seconds, job = run_job(api, urls)
            assert job["status"] == "done", job
            # The next day's scrape: the same URLs again, answered from the cache after a
            # conditional GET each (304), as most of a platform's nightly images are.
            warm_seconds, warm = run_job(api, urls)
            assert warm["status"] == "done", warm
            r: dict[str, object] = {
                f"workers_{workers}_seconds": seconds,
                f"workers_{workers}_images_per_s": len(urls) / seconds,
                f"workers_{workers}_ok": job["ok"],
                f"workers_{workers}_warm_seconds": warm_seconds,
                f"workers_{workers}_warm_images_per_s": len(urls) / warm_seconds,
            }
            r.update(h.figures(f"workers_{workers}"))
            if workers == 1 and args.classify:
                body = {"advertiser": "bench-classify", "images": [{"url": u} for u in args.classify_urls]}
                with Healthz(api) as h:
                    t = time.perf_counter()
                    res = httpx.post(f"{api}/v1/classify", json=body, timeout=900)
                    r["classify_seconds"] = time.perf_counter() - t
                r["classify_status"] = res.status_code
                r.update(h.figures("classify"))
            return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "dev" / "images")
    ap.add_argument("--n", type=int, default=300, help="images in the job")
    ap.add_argument("--chunk", type=int, default=25, help="LOTLENS_JOB_CHUNK")
    ap.add_argument("--classify", type=int, default=1000, help="images in the /v1/classify run (0: skip it)")
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test", help="an admin URL")
    ap.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "jobs.json")
    args = ap.parse_args()

    data, source = load_inputs(args.images, args.n)
    base, httpd = start_cdn(data, salted=True)
    urls = [f"{base}/s0/{i}.jpg" for i in range(len(data))]
    warm = [f"{base}/w/{i % len(data)}.jpg" for i in range(2 * args.chunk)]
    # New salts: the classify batch is as cold as the job, whatever the image count.
    args.classify_urls = [f"{base}/c{k // len(data)}/{k % len(data)}.jpg" for k in range(args.classify)]
    r: dict[str, object] = {"images": len(urls), "chunk": args.chunk, "source": source}
    r.update(one_config(args, 1, urls, warm))
    r.update(one_config(args, 2, urls, warm))
    r["speedup_2_vs_1"] = float(r["workers_2_images_per_s"]) / float(r["workers_1_images_per_s"])  # type: ignore[arg-type]
    httpd.shutdown()
    report(r, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
