"""Where a cold image's time goes: ms per image of each stage of the service's cold path, one stage
at a time over the same images (batches of `--batch`, as the service groups them).

Run: `.venv/bin/python bench/bench_stages.py [--n 120] [--batch 16] [--repeat 3]`. Each figure is the
best of `--repeat` passes (the machine is shared: the best pass is the least disturbed one).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import batches, load_inputs, report  # noqa: E402


def best_ms(fn: Callable[[], Any], n: int, repeat: int) -> float:
    """The fastest of `repeat` runs of `fn`, in ms per image of `n` images."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000 / max(1, n)


def main() -> int:
    from lotlens.imaging import decode
    from lotlens.keys import perceptual_hash
    from lotlens.vision import Pipeline
    from lotlens.vision.pipeline import crop_to, is_whole
    from lotlens.vision.signals import type_signals, white_background_box

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "dev" / "images")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "stages.json")
    args = ap.parse_args()

    data, source = load_inputs(args.images, args.n)
    n = len(data)
    pipeline = Pipeline.load(threads=args.threads)
    fz = pipeline.featurizer
    images = [decode(b) for b in data]
    pipeline.classify(images[:2])  # warm-up
    groups = batches(images, args.batch)
    types = [t for g in groups for t in [p.type for p in pipeline.classify(g)]]
    photos = [im for im, t in zip(images, types, strict=True) if t != "Placeholder"]
    located = [loc for g in batches(photos, args.batch) for loc in fz.locate_many(g)]
    crops = [crop_to(im, loc) for im, loc in zip(photos, located, strict=True)]
    on_white = sum(loc.source == "white_background" for loc in located)
    regions = pipeline.folder.color_regions
    r: dict[str, object] = {"images": n, "source": source, "photos": len(photos), "on_white": on_white}

    def stage(name: str, fn: Callable[[], Any]) -> None:
        r[f"{name}_ms"] = best_ms(fn, n, args.repeat)

    stage("sha256", lambda: [hashlib.sha256(b).hexdigest() for b in data])
    stage("decode_full", lambda: [decode(b, min_side=None) for b in data])
    stage("decode_draft", lambda: [decode(b) for b in data])
    stage("type_signals", lambda: [type_signals(im) for im in images])
    stage("backbone_whole", lambda: [fz.backbone.embed(g, args.batch) for g in groups])
    stage("type_features", lambda: [fz.type_features(g) for g in groups])
    stage("white_box", lambda: [white_background_box(im) for im in photos])
    need = [im for im, loc in zip(photos, located, strict=True) if loc.source != "white_background"]
    stage("detector", lambda: [fz.detector.detect_many(g) for g in batches(need, args.batch)])
    stage("locate", lambda: [fz.locate_many(g) for g in batches(photos, args.batch)])
    cut = [c for c, im in zip(crops, photos, strict=True) if not is_whole(c, im)]
    r["real_crops"] = len(cut)
    stage("backbone_crop", lambda: [fz.backbone.embed(g, args.batch) for g in batches(cut, args.batch)])
    stage("color_features", lambda: [fz.color_features(g, regions) for g in batches(crops, args.batch)])
    stage("phash", lambda: [perceptual_hash(im) for im in images])
    stage("classify_batched", lambda: [pipeline.classify(g) for g in groups])
    stage("classify_one", lambda: [pipeline.classify([im]) for im in images])
    report(r, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
