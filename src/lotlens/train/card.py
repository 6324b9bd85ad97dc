"""A model's card and provenance, written beside its weights: what it was trained on (counts and
the sha256 of every training image), how it scored per class and per source, what it is for and
where it is known to fall short. `train` writes them; `lotlens models card` shows them.

The card is made from `model.json` alone, so an existing folder (the bundled model) gets the same
card that training would have written.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lotlens.labels import COLORS, TYPES
from lotlens.train.manifest import manifest_sha256, read_manifest

CARD_JSON = "card.json"
CARD_MD = "model_card.md"
TRAINING_IMAGES = "training_images.json"

# Below these, a class or a source is named under "known limits".
WEAK_RECALL = 0.8
FEW_ROWS = 150

INTENDED_USE = (
    "Tag car dealers' inventory photos with an image type (Dealer photo, Stock/studio image, "
    "Placeholder graphic) and, for vehicle photos, one of twelve body colors, so that placeholders "
    "stay out of video and carousel ads and listings can be filtered by color. Answers are "
    "suggestions that staff and advertisers can fix; a fix always wins over the model."
)
OUT_OF_SCOPE = (
    "Not for identifying a vehicle's make, model, condition or owner, nor for images other than "
    "vehicle listings. Colors between palette colors (beige, gold, champagne, teal, two-tone) have "
    "no class and come out as the nearest palette color."
)
STANDING_LIMITS = (
    "The validation figures come from a group-aware fold of the training manifest (whole sources "
    "held out), not from a separate test set: score the model on your own held-out rows with "
    "`lotlens evaluate` before promoting it.",
    "Color is read from the biggest detected vehicle (or the whole image when none is found); a "
    "photo with several vehicles may be answered with another vehicle's color.",
    "Lighting, reflections and paint finishes move colors between neighbours (Grey/White/Black, "
    "Red/Burgundy, Blue/Purple).",
)


def training_images(manifest: Path, images_root: Path | None = None) -> dict[str, Any]:
    """The sha256 of each readable image of a training manifest: what `evaluate` checks a test
    manifest against (same bytes under another name are the same image)."""
    root = images_root or manifest.parent
    digests = set()
    for row in read_manifest(manifest):
        try:
            digests.add(hashlib.sha256((root / row.path).read_bytes()).hexdigest())
        except OSError:
            continue  # training skipped it too
    return {"manifest_sha256": manifest_sha256(manifest), "sha256": sorted(digests)}


def read_training_images(model_dir: Path, manifest_sha: str | None) -> set[str] | None:
    """The training images' hashes, or None when the folder has none or they belong to another
    manifest than the one `model.json` names (a stale file must not hide an overlap)."""
    try:
        data = json.loads((model_dir / TRAINING_IMAGES).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("manifest_sha256") != manifest_sha:
        return None
    return set(data.get("sha256", []))


def make_card(meta: dict[str, Any]) -> dict[str, Any]:
    """The card of a model from its `model.json` (no timestamps: the same model, the same card)."""
    metrics = meta.get("metrics") or {}
    data = meta.get("data") or {}
    per_class: dict[str, list[dict[str, Any]]] = {}
    for task, labels in (("type", TYPES), ("color", COLORS)):
        m = metrics.get(task) or {}
        per_class[task] = [
            {
                "label": label,
                "n": m.get("support", {}).get(label, 0),
                "precision": m.get("precision", {}).get(label),
                "recall": m.get("recall", {}).get(label),
            }
            for label in labels
            if m.get("support", {}).get(label) or label in m.get("precision", {})
        ]
    per_source = {
        "type": sorted(metrics.get("groups") or [], key=lambda g: (g["accuracy"], -g["n"], g["group"])),
        "color": sorted(metrics.get("color_groups") or [], key=lambda g: (g["accuracy"], -g["n"], g["group"])),
    }
    limits = list(STANDING_LIMITS)
    for task in ("type", "color"):
        for c in per_class[task]:
            if c["recall"] is not None and c["recall"] < WEAK_RECALL:
                limits.append(f"{task} {c['label']}: recall {c['recall']:.0%} on {c['n']} validation rows.")
    for color, n in sorted((data.get("color") or {}).items()):
        if n < FEW_ROWS:
            limits.append(f"color {color}: only {n} training rows (real and recolored).")
    for g in per_source["type"][:3]:
        if g["accuracy"] < 0.9:
            limits.append(f"source {g['group']}: type accuracy {g['accuracy']:.0%} on {g['n']} validation rows.")
    manifest = meta.get("manifest") or {}
    return {
        "version": meta.get("version"),
        "name": meta.get("name"),
        "lotlens": meta.get("lotlens"),
        "backbone": (meta.get("preprocessing") or {}).get("backbone", {}).get("weights"),
        "detector": (meta.get("preprocessing") or {}).get("detector", {}).get("graph"),
        "type_head": _type_head(meta.get("config") or {}),
        "data": {
            "manifest": {"path": manifest.get("path"), "sha256": manifest.get("sha256"), "rows": manifest.get("rows")},
            "type": data.get("type") or {},
            "color": data.get("color") or {},
            "generated": data.get("generated") or {},
            "skipped": len(data.get("skipped") or []),
            "seed": meta.get("seed"),
        },
        "metrics": {
            "split": metrics.get("split"),
            "type_accuracy": (metrics.get("type") or {}).get("accuracy"),
            "placeholder_recall": (metrics.get("type") or {}).get("recall", {}).get("Placeholder"),
            "color_accuracy": (metrics.get("color") or {}).get("accuracy"),
            "color_top2": (metrics.get("color") or {}).get("top2"),
            "per_class": per_class,
            "per_source": per_source,
        },
        "intended_use": INTENDED_USE,
        "out_of_scope": OUT_OF_SCOPE,
        "known_limits": limits,
    }


def _type_head(config: dict[str, Any]) -> str:
    """The type head in words, from the resolved training config (linear before model format 2)."""
    if config.get("type_head", "linear") == "network":
        return (
            f"{config.get('type_members')} networks of one hidden layer ({config.get('type_hidden')} units,"
            f" L2 {config.get('type_alpha')}), probabilities averaged"
        )
    return f"logistic (C={config.get('type_c', '-')})"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a Markdown page (model_card.md, `lotlens models card`)."""
    d, m = card["data"], card["metrics"]
    lines = [
        f"# Model card: {card['version']}",
        "",
        f"lotlens {card['lotlens']}; backbone {card['backbone']}; detector {card['detector']}; "
        f"type head {card['type_head']}.",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        card["out_of_scope"],
        "",
        "## Data",
        "",
        f"Training manifest `{d['manifest']['path']}` ({d['manifest']['rows']} rows, sha256 "
        f"`{d['manifest']['sha256']}`), seed {d['seed']}, {d['skipped']} unreadable rows skipped.",
        "",
        "| task | rows per class |",
        "|---|---|",
        f"| type | {', '.join(f'{k} {v}' for k, v in sorted(d['type'].items())) or '-'} |",
        f"| color | {', '.join(f'{k} {v}' for k, v in sorted(d['color'].items())) or '-'} |",
        f"| generated | {', '.join(f'{k} {v}' for k, v in sorted(d['generated'].items())) or '-'} |",
        "",
        "## Metrics",
        "",
        f"On the {m['split'] or 'validation split'}: type accuracy {_pct(m['type_accuracy'])}, placeholder "
        f"recall {_pct(m['placeholder_recall'])}, color top-1 {_pct(m['color_accuracy'])}, "
        f"top-2 {_pct(m['color_top2'])}.",
        "",
        "| task | class | n | precision | recall |",
        "|---|---|---:|---:|---:|",
    ]
    for task in ("type", "color"):
        for c in m["per_class"][task]:
            lines.append(f"| {task} | {c['label']} | {c['n']} | {_pct(c['precision'])} | {_pct(c['recall'])} |")
    for task in ("type", "color"):
        if m["per_source"][task]:
            lines += ["", f"Per source ({task} accuracy, worst first):", ""]
            lines += ["| source | n | accuracy |", "|---|---:|---:|"]
            lines += [f"| {g['group']} | {g['n']} | {_pct(g['accuracy'])} |" for g in m["per_source"][task]]
    lines += ["", "## Known limits", ""]
    lines += [f"- {item}" for item in card["known_limits"]]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_card(model_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write card.json and model_card.md into `model_dir`; returns the card."""
    card = make_card(meta)
    _write(model_dir / CARD_JSON, json.dumps(card, indent=1, sort_keys=True) + "\n")
    _write(model_dir / CARD_MD, card_markdown(card))
    return card


def write_training_images(model_dir: Path, manifest: Path, images_root: Path | None = None) -> int:
    """Write training_images.json for a model trained on `manifest`; returns the image count."""
    found = training_images(manifest, images_root)
    _write(model_dir / TRAINING_IMAGES, json.dumps(found, indent=0) + "\n")
    return len(found["sha256"])
