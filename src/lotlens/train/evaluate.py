"""`lotlens evaluate`: run the whole pipeline on a labelled manifest and score it.

The pipeline runs as in serving (type on the whole image, color on the crop), so a color row the
model calls a placeholder counts as a wrong color. Images that cannot be read are listed, not scored.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lotlens.errors import ImageDecodeError
from lotlens.imaging import MODEL_SIDE, RGBArray, decode
from lotlens.labels import COLORS, TYPES
from lotlens.train.manifest import Row, manifest_sha256, read_manifest
from lotlens.train.metrics import calibration, classification, per_group, true_label_probability
from lotlens.vision.pipeline import Pipeline, Prediction

Step = Callable[[int, int], None]
MOST_WRONG = 15


def predict_rows(
    pipeline: Pipeline,
    rows: list[Row],
    root: Path,
    batch_size: int = 16,
    on_step: Step | None = None,
    digests: dict[str, str] | None = None,
) -> tuple[list[tuple[Row, Prediction]], list[dict[str, str]]]:
    """Classify every readable row; return (row, prediction) pairs and the skipped rows with reasons.

    `digests`, when given, receives each read row's path -> sha256 of its bytes.
    """
    done: list[tuple[Row, Prediction]] = []
    skipped: list[dict[str, str]] = []
    for start in range(0, len(rows), batch_size):
        if on_step:
            on_step(start, len(rows))
        batch: list[tuple[Row, RGBArray]] = []
        for row in rows[start : start + batch_size]:
            try:
                data = (root / row.path).read_bytes()
                if digests is not None:
                    digests[row.path] = hashlib.sha256(data).hexdigest()
                batch.append((row, decode(data, min_side=MODEL_SIDE)))
            except FileNotFoundError:
                skipped.append({"path": row.path, "reason": "missing"})
            except OSError as exc:
                skipped.append({"path": row.path, "reason": f"unreadable: {exc.strerror}"})
            except ImageDecodeError as exc:
                skipped.append({"path": row.path, "reason": exc.reason})
        preds = pipeline.classify([im for _, im in batch])
        done.extend(zip([r for r, _ in batch], preds, strict=True))
    if on_step:
        on_step(len(rows), len(rows))
    return done, skipped


def score(model: str, pairs: list[tuple[Row, Prediction]], skipped: list[dict[str, str]]) -> dict[str, Any]:
    """Metrics of the pipeline's answers against the rows' labels (arrays in, numbers out)."""
    typed = [(r, p) for r, p in pairs if r.type]
    colored = [(r, p) for r, p in pairs if r.color]
    t_true = [TYPES.index(r.type) for r, _ in typed if r.type]
    t_probs = np.array([[p.type_scores[k] for k in TYPES] for _, p in typed], dtype=np.float64).reshape(-1, len(TYPES))
    t_pred = [TYPES.index(p.type) for _, p in typed]
    c_true = [COLORS.index(r.color) for r, _ in colored if r.color]
    c_probs = np.array(
        [[p.color_scores[k] for k in COLORS] if p.color_scores else [np.nan] * len(COLORS) for _, p in colored],
        dtype=np.float64,
    ).reshape(-1, len(COLORS))
    type_m = classification(TYPES, t_true, t_probs, t_pred)
    color_m = classification(COLORS, c_true, c_probs)

    by_group: dict[str, dict[str, list[bool]]] = {}
    for r, p in typed:
        by_group.setdefault(r.group, {"type": [], "color": []})["type"].append(p.type == r.type)
    for r, p in colored:
        by_group.setdefault(r.group, {"type": [], "color": []})["color"].append(p.color == r.color)
    groups = []
    for g, hits in by_group.items():
        t_acc = float(np.mean(hits["type"])) if hits["type"] else None
        c_acc = float(np.mean(hits["color"])) if hits["color"] else None
        groups.append(
            {
                "group": g,
                "n": max(len(hits["type"]), len(hits["color"])),
                "n_type": len(hits["type"]),
                "type_accuracy": t_acc,
                "n_color": len(hits["color"]),
                "color_accuracy": c_acc,
            }
        )
    groups.sort(key=_worst_first)

    wrong = []
    for task, items, truth, probs in (("type", typed, t_true, t_probs), ("color", colored, c_true, c_probs)):
        p_true = true_label_probability(truth, probs)
        for i in np.argsort(p_true)[:MOST_WRONG]:
            r, p = items[int(i)]
            answer = p.type if task == "type" else p.color
            expected = r.type if task == "type" else r.color
            if answer != expected:
                wrong.append(
                    {
                        "task": task,
                        "path": r.path,
                        "group": r.group,
                        "expected": expected,
                        "answer": answer,
                        "p_expected": round(float(p_true[i]), 4),
                        "box": p.box,
                    }
                )
    return {
        "model": model,
        "type": type_m,
        "placeholder_recall": type_m["recall"].get("Placeholder"),
        "color": color_m,
        "color_calibration": calibration(c_true, c_probs),
        "groups": groups,
        "groups_by_type": per_group([r.group for r, _ in typed], [p.type == r.type for r, p in typed]),
        "most_wrong": wrong,
        "skipped": skipped,
        # Where color was read, per photo: "frame" (the frame head skipped the detector), "detector",
        # "white_background" or "none" (the detector found nothing).
        "color_located": dict(sorted(Counter(p.box_source for _, p in pairs if p.color).items())),
    }


def _worst_first(g: dict[str, Any]) -> tuple[float, int]:
    accuracies = [a for a in (g["type_accuracy"], g["color_accuracy"]) if a is not None]
    return (min(accuracies), -int(g["n"]))


def evaluate(
    pipeline: Pipeline,
    manifest: Path,
    images_root: Path | None = None,
    on_step: Step | None = None,
    trained_on: set[str] | None = None,
) -> dict[str, Any]:
    """Read `manifest`, classify its images (paths relative to `images_root`), return the metrics.

    `trained_on` holds the sha256 of the model's training images (`training_images.json`); rows
    whose bytes are among them are counted under `training_overlap`, and `unseen` scores the
    others alone. Without it the overlap is unknown, and said to be.
    """
    rows = read_manifest(manifest)
    digests: dict[str, str] = {}
    pairs, skipped = predict_rows(pipeline, rows, images_root or manifest.parent, on_step=on_step, digests=digests)
    result = score(pipeline.version, pairs, skipped)
    result["manifest"] = {"path": str(manifest), "sha256": manifest_sha256(manifest), "rows": len(rows)}
    result["overall"] = headline(result)
    result["training_overlap"] = None
    result["unseen"] = None
    if trained_on is not None:
        unseen = [(r, p) for r, p in pairs if digests[r.path] not in trained_on]
        result["training_overlap"] = {"shared": len(pairs) - len(unseen), "scored": len(pairs)}
        result["unseen"] = headline(score(pipeline.version, unseen, []))
    return result


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The few figures people compare: counts, type accuracy, placeholder recall, color top-1."""
    return {
        "n_type": result["type"]["n"],
        "type_accuracy": result["type"]["accuracy"],
        "placeholder_recall": result["placeholder_recall"],
        "n_color": result["color"]["n"],
        "color_accuracy": result["color"]["accuracy"],
    }


def compare(
    name_a: str,
    pairs_a: list[tuple[Row, Prediction]],
    name_b: str,
    pairs_b: list[tuple[Row, Prediction]],
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    """Two models' answers on the same rows, side by side: totals, per class, per group, differences.

    Both lists come from `predict_rows` over the same manifest, so rows line up one to one.

    Raises:
        ValueError: the two lists do not hold the same rows in the same order.
    """
    if [r.path for r, _ in pairs_a] != [r.path for r, _ in pairs_b]:
        raise ValueError("compare needs both models' answers on the same rows, in the same order")
    a, b = score(name_a, pairs_a, skipped), score(name_b, pairs_b, skipped)
    classes = []
    for task, labels in (("type", TYPES), ("color", COLORS)):
        for label in labels:
            n = a[task]["support"].get(label, 0)
            if n:
                classes.append(
                    {"task": task, "label": label, "n": n, "a": a[task]["recall"][label], "b": b[task]["recall"][label]}
                )
    by_group = {g["group"]: g for g in a["groups"]}
    groups = [
        {
            "group": g["group"],
            "n_type": g["n_type"],
            "n_color": g["n_color"],
            "a_type": by_group[g["group"]]["type_accuracy"],
            "b_type": g["type_accuracy"],
            "a_color": by_group[g["group"]]["color_accuracy"],
            "b_color": g["color_accuracy"],
        }
        for g in b["groups"]
    ]
    groups.sort(key=lambda g: g["group"])
    differ = []
    for (row, pa), (_, pb) in zip(pairs_a, pairs_b, strict=True):
        for task, truth, ans_a, ans_b, conf_a, conf_b in (
            ("type", row.type, pa.type, pb.type, pa.type_scores.get(pa.type), pb.type_scores.get(pb.type)),
            (
                "color",
                row.color,
                pa.color,
                pb.color,
                pa.color_scores.get(pa.color or ""),
                pb.color_scores.get(pb.color or ""),
            ),
        ):
            if truth and ans_a != ans_b:
                differ.append(
                    {
                        "task": task,
                        "path": row.path,
                        "group": row.group,
                        "expected": truth,
                        "a": ans_a,
                        "b": ans_b,
                        "a_confidence": conf_a,
                        "b_confidence": conf_b,
                        "winner": "a" if ans_a == truth else "b" if ans_b == truth else "neither",
                    }
                )
    return {"a": a, "b": b, "classes": classes, "groups": groups, "differ": differ, "skipped": skipped}


def evaluate_compare(
    pipeline_a: Pipeline,
    pipeline_b: Pipeline,
    manifest: Path,
    images_root: Path | None = None,
    on_step: Step | None = None,
    trained_on: tuple[set[str] | None, set[str] | None] = (None, None),
) -> dict[str, Any]:
    """Score two models on one manifest (model a: `pipeline_a`, b: `pipeline_b`) and compare them.

    `trained_on`: each model's training images (sha256), as for `evaluate`; each side then says
    how many scored rows it was trained on (`training_overlap`, None where unknown).
    """
    rows = read_manifest(manifest)
    root = images_root or manifest.parent
    digests: dict[str, str] = {}
    pairs_a, skipped = predict_rows(pipeline_a, rows, root, on_step=on_step, digests=digests)
    pairs_b, _ = predict_rows(pipeline_b, rows, root, on_step=on_step)
    result = compare(pipeline_a.version, pairs_a, pipeline_b.version, pairs_b, skipped)
    result["manifest"] = {"path": str(manifest), "sha256": manifest_sha256(manifest), "rows": len(rows)}
    for side, seen in zip(("a", "b"), trained_on, strict=True):
        result[side]["manifest"] = result["manifest"]
        shared = None if seen is None else sum(digests[r.path] in seen for r, _ in pairs_a)
        result[side]["training_overlap"] = None if seen is None else {"shared": shared, "scored": len(pairs_a)}
    return result
