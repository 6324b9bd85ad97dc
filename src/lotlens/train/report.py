"""HTML evaluation reports: the numbers of `evaluate` with confusion-matrix, per-group and
reliability plots; and the side-by-side page of `evaluate --compare` with thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape


def _confusion_png(m: dict[str, Any], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels, matrix = m["confusion"]["labels"], np.asarray(m["confusion"]["matrix"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(labels), 1.0 + 0.5 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = matrix.max() or 1
    for (i, j), v in np.ndenumerate(matrix):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _groups_png(groups: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [g["group"] for g in groups]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * max(1, len(names))))
    y = range(len(names))
    ax.barh([v - 0.2 for v in y], [g["type_accuracy"] or 0 for g in groups], height=0.4, label="type")
    ax.barh([v + 0.2 for v in y], [g["color_accuracy"] or 0 for g in groups], height=0.4, label="color")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (0 where the group has no such label)")
    ax.set_title("per group (advertiser), worst first")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reliability_png(calibrations: dict[str, dict[str, Any]], path: Path) -> None:
    """Reliability diagram: accuracy against confidence per bin, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, cal in calibrations.items():
        bins = cal["bins"]
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker="o",
            label=f"{name} (ECE {100 * cal['ece']:.1f}%)",
        )
        for b in bins:
            ax.annotate(
                str(b["n"]), (b["confidence"], b["accuracy"]), fontsize=7, xytext=(3, -9), textcoords="offset points"
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("color confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("color reliability (numbers: images per bin)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("lotlens.train", "templates"), autoescape=select_autoescape())
    env.filters["pct"] = lambda v: "-" if v is None or v != v else f"{100 * v:.1f}%"
    return env


def write_report(result: dict[str, Any], folder: Path) -> Path:
    """Write `index.html` and its PNG plots into `folder`; return the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    _confusion_png(result["type"], "type", folder / "confusion_type.png")
    _confusion_png(result["color"], "color", folder / "confusion_color.png")
    _groups_png(result["groups"], folder / "groups.png")
    _reliability_png({"color": result["color_calibration"]}, folder / "reliability.png")
    page = folder / "index.html"
    page.write_text(_environment().get_template("report.html").render(r=result))
    return page


MAX_THUMBNAILS = 120
THUMB_SIDE = 160


def _thumbnail(source: Path, target: Path) -> bool:
    """A small JPEG of `source` at `target`; False when the image cannot be read."""
    from PIL import Image

    from lotlens.errors import ImageDecodeError
    from lotlens.imaging import decode

    try:
        image = Image.fromarray(decode(source.read_bytes(), min_side=THUMB_SIDE))
    except (OSError, ImageDecodeError):
        return False
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    image.save(target, "JPEG", quality=80)
    return True


def write_compare_report(result: dict[str, Any], folder: Path, images_root: Path) -> Path:
    """Write `index.html` of `evaluate --compare` into `folder`, with thumbnails of the images
    where the two models differ (the first `MAX_THUMBNAILS`); return the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    _reliability_png(
        {
            f"a: {result['a']['model']}": result["a"]["color_calibration"],
            f"b: {result['b']['model']}": result["b"]["color_calibration"],
        },
        folder / "reliability.png",
    )
    thumbs = folder / "thumbs"
    thumbs.mkdir(exist_ok=True)
    made: dict[str, str] = {}
    for d in result["differ"]:
        if d["path"] in made or len(made) >= MAX_THUMBNAILS:
            continue
        name = f"{len(made):04d}.jpg"
        if _thumbnail(images_root / d["path"], thumbs / name):
            made[d["path"]] = f"thumbs/{name}"
    page = folder / "index.html"
    page.write_text(_environment().get_template("compare.html").render(r=result, thumbs=made))
    return page
