"""Cold batches back to back: the service as `bench_service.py` sets it up (local CDN, the model as
a serving process loads it), `--rounds` batches of `--n` new images one after the other, with no
idle moment between them (`bench_service.py` runs a naive loop between its cold rounds, so each
of those starts after the batcher's idle trim). Prints each round's seconds and CPU ms an image,
and their medians.

Run: `.venv/bin/python bench/bench_cold.py [--n 120] [--rounds 8]`. To compare two commits on one
machine, run it in turns with `PYTHONPATH=<other checkout>/src` (this file's CDN and set-up stay
the same).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import load_inputs  # noqa: E402
from bench_service import WARMUP_IMAGES, start_cdn  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "dev" / "images")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()

    from lotlens.champion import Champion
    from lotlens.config import Settings
    from lotlens.imaging import decode
    from lotlens.service import Item, Service
    from lotlens.store import Store

    data, source = load_inputs(args.images, args.n)
    base, httpd = start_cdn(data, salted=True)
    n = len(data)
    rounds: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), allow_private_addresses=True, url_trust_checks=0)
        store = Store.from_url(settings.resolved_database_url())
        pipeline = Champion(settings, store)()
        pipeline.classify([decode(data[0])])  # warm-up
        service = Service(settings, store, lambda: pipeline)

        async def run() -> None:
            async with service:
                warmup = [Item(f"{base}/warmup/{i}.jpg") for i in range(WARMUP_IMAGES)]
                await service.classify_with_stats("bench", warmup)
                for k in range(args.rounds):
                    items = [Item(f"{base}/cold{k}/{i}.jpg") for i in range(n)]
                    t, cpu = time.perf_counter(), time.process_time()
                    await service.classify_with_stats("bench", items)
                    rounds.append((time.perf_counter() - t, (time.process_time() - cpu) * 1000 / n))

        asyncio.run(run())
        service.store.engine.dispose()
    httpd.shutdown()
    print(f"images {n} ({source}), model {pipeline.version}")
    print("cold_rounds_s", [round(s, 3) for s, _ in rounds])
    print("cold_cpu_ms_per_image_rounds", [round(c, 1) for _, c in rounds])
    print(f"cold_s_median {statistics.median(s for s, _ in rounds):.3f}")
    print(f"cold_cpu_ms_per_image_median {statistics.median(c for _, c in rounds):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
