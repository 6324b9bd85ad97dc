"""Review-page render times for an advertiser with 2,000 images, through `lotlens serve` on loopback.

Run: `.venv/bin/python bench/bench_pages.py [--images 2000] [--others 4] [--repeat 15]`. The store is
SQLite with the advertiser's images, 4 other advertisers of the same size, 5% of images fixed and 50
skipped URLs. Each page is fetched `--repeat` times by a signed-in staff member; figures are the
median and the slowest time in ms. The inventory is measured twice: after a change (a fix lands
before each fetch, so the whole listing is read and resolved again) and repeated (the listing is
reused). Ratios are against baselines measured in the same run: `/healthz` (the HTTP floor) and the
same inventory unpaged (1,000 cards a page, also read afresh each time).
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import report  # noqa: E402

BUDGET_MS = 300.0
STAFF_KEY = "s" * 32


def seed(url: str, advertisers: list[str], per_advertiser: int) -> tuple[list[str], int]:
    """Bulk-insert a realistic store (core inserts: the service would take minutes to fill it)."""
    from sqlalchemy import insert

    from lotlens.labels import COLORS, TYPES
    from lotlens.store import Store
    from lotlens.store.tables import Fix, Image, Prediction, Sighting, Skip

    store = Store.from_url(url)
    rng = random.Random(7)
    t0 = datetime.now(UTC) - timedelta(days=30)
    images, preds, sightings, fixes, skips = [], [], [], [], []
    keys_of_first: list[str] = []
    for a, adv in enumerate(advertisers):
        for i in range(per_advertiser):
            key = f"c:{a:04x}{i:060x}"
            type_ = rng.choices(TYPES, weights=[6, 3, 1])[0]
            color = None if type_ == "Placeholder" else rng.choice(COLORS)
            tp = dict.fromkeys(TYPES, 0.02) | {type_: rng.uniform(0.4, 0.99)}
            cp = dict.fromkeys(COLORS, 0.01) | ({color: rng.uniform(0.3, 0.95)} if color else {})
            when = t0 + timedelta(minutes=i)
            images.append(
                {"content_key": key, "phash": rng.getrandbits(62), "width": 320, "height": 240, "first_seen": when}
            )
            preds.append(
                {
                    "content_key": key,
                    "model_version": "lite0-bench",
                    "type": type_,
                    "color": color,
                    "scores": {"type": tp, "color": cp if color else {}, "vehicle": "car"},
                    "box": [20, 30, 300, 220] if color else None,
                    "created_at": when,
                }
            )
            sightings.append(
                {
                    "advertiser": adv,
                    "url": f"https://cdn.example/{adv}/{i}.jpg",
                    "content_key": key,
                    "vehicle_id": f"v{i // 8}",
                    "first_seen": when,
                    "last_seen": when + timedelta(days=rng.randint(0, 29)),
                    "source": rng.choice(["model", "cache", "cache", "cache"]),
                }
            )
            if rng.random() < 0.05:
                fixes.append(
                    {
                        "content_key": key,
                        "advertiser": adv,
                        "field": "type",
                        "old_value": type_,
                        "new_value": rng.choice([t for t in TYPES if t != type_]),
                        "actor": f"{adv}-user",
                        "role": f"advertiser:{adv}",
                        "scope": "advertiser",
                        "comment": None,
                        "created_at": when + timedelta(hours=1),
                        "model_version": "lite0-bench",
                    }
                )
            if a == 0:
                keys_of_first.append(key)
        for i in range(50):
            skips.append(
                {
                    "advertiser": adv,
                    "url": f"https://cdn.example/{adv}/gone-{i}.jpg",
                    "reason": "http_404",
                    "vehicle_id": None,
                    "first_seen": t0,
                    "last_seen": t0 + timedelta(days=29),
                }
            )
    with store.engine.begin() as conn:
        for table, rows in ((Image, images), (Prediction, preds), (Sighting, sightings), (Fix, fixes), (Skip, skips)):
            for start in range(0, len(rows), 2000):
                conn.execute(insert(table), rows[start : start + 2000])
    store.engine.dispose()
    return keys_of_first, len(fixes)


def serve(settings: object) -> tuple[str, object, threading.Thread]:
    import uvicorn

    from lotlens.web import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def signed_in(base: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=60, follow_redirects=True)
    c.get("/signin")
    r = c.post("/signin", data={"key": STAFF_KEY, "csrf": c.cookies["lotlens_signin"], "next": "/"})
    r.raise_for_status()
    return c


def timed(c: httpx.Client, path: str, repeat: int, before: Callable[[], None] | None = None) -> tuple[float, float]:
    c.get(path).raise_for_status()  # warm-up
    ms = []
    for _ in range(repeat):
        if before is not None:
            before()
        t = time.perf_counter()
        r = c.get(path)
        ms.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    return statistics.median(ms), max(ms)


def main() -> int:
    from lotlens.config import ApiKey, Settings
    from lotlens.store import Store

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=2000, help="images of the advertiser measured")
    ap.add_argument("--others", type=int, default=4, help="other advertisers of the same size in the store")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pages.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        advertisers = ["dealer-0", *[f"dealer-{i + 1}" for i in range(args.others)]]
        base_settings = {
            "data_dir": Path(tmp),
            "api_keys": [ApiKey(name="bench", key=STAFF_KEY, role="staff")],
            "keep_images": False,
        }
        settings = Settings(**base_settings)  # type: ignore[arg-type]
        t = time.perf_counter()
        keys, n_fixes = seed(settings.resolved_database_url(), advertisers, args.images)
        seeded_s = time.perf_counter() - t
        base, server, thread = serve(settings)
        unpaged_base, unpaged, unpaged_thread = serve(Settings(**base_settings, page_size=1000))  # type: ignore[arg-type]
        c, u = signed_in(base), signed_in(unpaged_base)
        try:
            floor = timed(c, "/healthz", args.repeat)
            # a fix lands before each fetch, so each render reads and resolves the whole inventory again
            store = Store.from_url(settings.resolved_database_url())
            fixes = iter(range(10**6))

            def another_fix() -> None:
                i = next(fixes)
                store.add_fix(
                    keys[i % len(keys)],
                    "color",
                    "Red" if i % 2 else "Blue",
                    actor="bench",
                    role="staff",
                    scope="advertiser",
                    advertiser="dealer-0",
                )

            cold = timed(c, "/advertisers/dealer-0", args.repeat, before=another_fix)
            unpaged_ms = timed(u, "/advertisers/dealer-0", max(3, args.repeat // 3), before=another_fix)
            store.engine.dispose()
            pages = {
                "inventory": "/advertisers/dealer-0",
                "inventory_placeholder": "/advertisers/dealer-0?type=Placeholder",
                "inventory_low_confidence": "/advertisers/dealer-0?low=1",
                "inventory_last_page": "/advertisers/dealer-0?page=21",
                "image": f"/images/{keys[17]}?advertiser=dealer-0",
                "history": "/fixes?advertiser=dealer-0",
                "advertisers": "/advertisers",
                "models": "/models",
            }
            figures = {name: timed(c, path, args.repeat) for name, path in pages.items()}
        finally:
            c.close()
            u.close()
            for s, th in ((server, thread), (unpaged, unpaged_thread)):
                s.should_exit = True  # type: ignore[attr-defined]
                th.join(timeout=10)

    r: dict[str, object] = {
        "advertiser_images": args.images,
        "store_images": args.images * len(advertisers),
        "fixes": n_fixes,
        "seed_s": round(seeded_s, 1),
        "healthz_ms": round(floor[0], 2),
        "unpaged_inventory_ms": round(unpaged_ms[0], 1),
    }
    r["inventory_after_a_change_ms"] = round(cold[0], 1)
    r["inventory_after_a_change_max_ms"] = round(cold[1], 1)
    worst = cold[1]
    for name, (median, slowest) in figures.items():
        r[f"{name}_ms"] = round(median, 1)
        r[f"{name}_max_ms"] = round(slowest, 1)
        worst = max(worst, slowest)
    r["inventory_vs_unpaged"] = f"{unpaged_ms[0] / cold[0]:.1f}x faster (both read the store)"
    r["repeat_vs_after_a_change"] = f"{cold[0] / figures['inventory'][0]:.1f}x faster (listing reused)"
    r["inventory_vs_healthz"] = f"{figures['inventory'][0] / floor[0]:.1f}x the HTTP floor"
    r["budget"] = f"slowest {worst:.0f} ms against {BUDGET_MS:.0f} ms: {'ok' if worst < BUDGET_MS else 'OVER'}"
    report(r, args.out)
    return 0 if worst < BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
