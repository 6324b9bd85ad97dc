"""HTML evaluation report: the numbers of `evaluate` with confusion-matrix and per-group plots."""

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


def write_report(result: dict[str, Any], folder: Path) -> Path:
    """Write `index.html` and its PNG plots into `folder`; return the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    _confusion_png(result["type"], "type", folder / "confusion_type.png")
    _confusion_png(result["color"], "color", folder / "confusion_color.png")
    _groups_png(result["groups"], folder / "groups.png")
    env = Environment(loader=PackageLoader("lotlens.train", "templates"), autoescape=select_autoescape())
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    page = folder / "index.html"
    page.write_text(env.get_template("report.html").render(r=result))
    return page
