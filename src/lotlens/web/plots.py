"""Small inline SVG charts for the models page: no plotting library on the serving path.

Pure functions: figures in, SVG markup out (every text escaped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from html import escape

from markupsafe import Markup

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04")


def line_chart(
    series: Mapping[str, Sequence[tuple[date, float]]],
    days: Sequence[date],
    *,
    title: str,
    unit: str = "",
    width: int = 640,
    height: int = 220,
) -> Markup:
    """One line per series over `days`; a day a series has no figure for is a gap, not a zero."""
    rows = -(-len(series) // 3)  # legend rows, three names a row
    left, right, top, bottom = 48, 12, 28, 30 + 14 * rows
    height += 14 * rows
    w, h = width - left - right, height - top - bottom
    values = [v for pts in series.values() for _, v in pts]
    y_max = max(values, default=0.0) or 1.0
    x_of = {d: left + (w * i / max(1, len(days) - 1)) for i, d in enumerate(days)}

    def y(v: float) -> float:
        return top + h - h * v / y_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for frac in (0.0, 0.5, 1.0):
        yy = y(y_max * frac)
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{y_max * frac:.3g}{escape(unit)}</text>')
    if days:
        for d, anchor in ((days[0], "start"), (days[len(days) // 2], "middle"), (days[-1], "end")):
            parts.append(f'<text x="{x_of[d]:.1f}" y="{top + h + 16}" text-anchor="{anchor}">{d:%b %d}</text>')
    for i, (name, pts) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = [[]]
        known = dict(pts)
        for d in days:
            if d in known:
                runs[-1].append(f"{x_of[d]:.1f},{y(known[d]):.1f}")
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="2"/>')
            for p in run:
                cx, cy = p.split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
        lx = left + (i % 3) * (w / 3)
        ly = top + h + 36 + 14 * (i // 3)
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14:.1f}" y="{ly - 4}" class="legend">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(values: Sequence[float | None], *, width: int = 120, height: int = 24) -> Markup:
    """A tiny line of daily values (None = no figure that day), scaled to its own maximum."""
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    step = width / max(1, len(values) - 1)
    pts = [f"{i * step:.1f},{height - 2 - (height - 4) * v / top:.1f}" for i, v in enumerate(values) if v is not None]
    line = f'<polyline points="{" ".join(pts)}" fill="none" stroke="#2563eb" stroke-width="1.5"/>' if pts else ""
    if len(pts) == 1:  # one day of figures: a dot, not an invisible line
        x, y = pts[0].split(",")
        line = f'<circle cx="{x}" cy="{y}" r="2" fill="#2563eb"/>'

    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-hidden="true">{line}</svg>'
    )
