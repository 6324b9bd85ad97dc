"""The model registry, the last sweep, the watch charts; promote and roll back (admin)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field

from lotlens.access import Access
from lotlens.api import AppState
from lotlens.errors import InvalidInput, StorageError
from lotlens.storage import Storage
from lotlens.web.common import State, Who, check_csrf, render, see_other
from lotlens.web.plots import line_chart, sparkline

# -- models ---------------------------------------------------------------------------------------


def _last_sweep(data_dir: Path) -> dict[str, Any] | None:
    found = sorted((data_dir / "sweeps").glob("*/comparison.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    try:
        sweep: dict[str, Any] = json.loads(found[-1].read_text())
    except (OSError, ValueError):
        return None
    sweep["has_plot"] = (found[-1].parent / "metrics.png").is_file()
    sweep["has_report"] = (found[-1].parent / "report.html").is_file()
    return sweep


def _watch(state: AppState, days: int) -> dict[str, Any]:
    from lotlens.train.monitor import watch

    w = watch(state.store, days=days)
    today = datetime.now(UTC).date()
    span = [today - timedelta(days=days - 1 - i) for i in range(days)]
    per_model: dict[str, dict[date, list[int]]] = {}
    per_pair: dict[tuple[str, str], dict[date, list[int]]] = {}
    for (day, adv, version), f in w.daily.items():
        for agg in (
            per_model.setdefault(version, {}).setdefault(day, [0, 0]),
            per_pair.setdefault((adv, version), {}).setdefault(day, [0, 0]),
        ):
            agg[0] += f.answers
            agg[1] += f.fixes

    def rate(n: int, fixes: int) -> float | None:
        return 1000.0 * fixes / n if n else None

    fix_rate = {
        version: [(d, r) for d, (n, x) in sorted(by_day.items()) if (r := rate(n, x)) is not None]
        for version, by_day in per_model.items()
    }
    answers = {
        version: [(d, float(n)) for d, (n, _x) in sorted(by_day.items())] for version, by_day in per_model.items()
    }
    pairs = []
    for (adv, version), by_day in sorted(per_pair.items()):
        n = sum(a for a, _ in by_day.values())
        fixes = sum(x for _, x in by_day.values())
        pairs.append(
            {
                "advertiser": adv,
                "model_version": version,
                "answers": n,
                "fixes": fixes,
                "fix_rate": rate(n, fixes),
                "spark": sparkline([rate(*by_day[d]) if d in by_day else None for d in span]),
            }
        )
    return {
        "flags": w.flags,
        "pairs": pairs,
        "fix_rate_chart": line_chart(fix_rate, span, title=f"fixes per 1,000 answers, last {days} days"),
        "answers_chart": line_chart(answers, span, title=f"answers per day, last {days} days"),
    }


class PromoteForm(BaseModel):
    csrf: str = Field(max_length=200)
    alias: Literal["champion", "challenger"] = "champion"
    reason: str | None = Field(default=None, max_length=2000)
    confirm: bool = False  # the promote form's "yes, serve this model" box


def _compared(sweep: dict[str, Any] | None, models: list[Any], champion: str | None) -> dict[str, Any] | None:
    """The last sweep with the champion beside its candidates: each candidate's differences from the
    champion, and each registered candidate's registry scores next to its sweep scores. Scores are
    only compared on the same test set (the same dataset); otherwise the page says they differ."""
    if sweep is None:
        return None
    by_version = {m.version: m for m in models}

    def scores(m: Any) -> dict[str, Any]:
        t, c = m.metrics.get("type") or {}, m.metrics.get("color") or {}
        return {
            "type_accuracy": t.get("accuracy"),
            "placeholder_recall": (t.get("recall") or {}).get("Placeholder"),
            "color_accuracy": c.get("accuracy"),
            "dataset": m.dataset,
        }

    champ = by_version.get(champion or "")
    sweep["champion"] = {"version": champion, **scores(champ)} if champ else None
    sweep["same_test_set"] = champ is not None and champ.dataset == sweep.get("dataset")
    for row in sweep.get("rows", []):
        registered = by_version.get(row.get("version") or "")
        row["registry"] = scores(registered) if registered else None
        row["delta"] = {
            k: row[k] - sweep["champion"][k]
            for k in ("type_accuracy", "placeholder_recall", "color_accuracy")
            if sweep["same_test_set"] and row.get(k) is not None and sweep["champion"][k] is not None
        }
    return sweep


router = APIRouter()


@router.get("/models", response_class=HTMLResponse)
async def models_page(
    request: Request, state: State, viewer: Who, days: Annotated[int, Query(ge=2, le=90)] = 14
) -> Response:
    Access.require_staff(viewer.who)

    def load() -> dict[str, Any]:
        aliases = state.registry.aliases()
        models = state.registry.models()[::-1]
        return {
            "serving": state.champion().version,
            "aliases": aliases,
            "models": models,
            "promotions": state.registry.history()[::-1],
            "sweep": _compared(_last_sweep(state.settings.data_dir), models, aliases.get("champion")),
            "watch": _watch(state, days),
            "days": days,
        }

    return render(request, viewer, "models.html", **(await asyncio.to_thread(load)))


def _card(state: AppState, version: str) -> dict[str, Any]:
    from lotlens.train.card import CARD_JSON, make_card
    from lotlens.vision.pipeline import MODEL_FILE

    rec = state.registry.get(version)
    if rec is None:
        raise HTTPException(404, f"no registered model {version}")
    try:
        folder = Storage.from_settings(state.settings).local_folder(rec.path)
    except StorageError:
        raise HTTPException(404, f"the folder of {version} cannot be read") from None
    try:
        card: dict[str, Any] = json.loads((folder / CARD_JSON).read_text())
    except (OSError, ValueError):
        try:  # a folder from before cards: the same card, made from its model.json
            card = make_card(json.loads((folder / MODEL_FILE).read_text()))
        except (OSError, ValueError):
            raise HTTPException(404, f"the folder of {version} cannot be read") from None
    return card


@router.get("/models/{version}/card", response_class=HTMLResponse)
async def model_card(version: str, request: Request, state: State, viewer: Who) -> Response:
    """A registered model's card: data, metrics per class and per source, intended use, known limits."""
    Access.require_staff(viewer.who)
    card = await asyncio.to_thread(_card, state, version)
    return render(request, viewer, "model_card.html", card=card)


@router.get("/models/sweeps/{sweep_id}/{name}")
async def sweep_file(sweep_id: str, name: Literal["report.html", "metrics.png"], state: State, viewer: Who) -> Response:
    Access.require_staff(viewer.who)
    root = (state.settings.data_dir / "sweeps").resolve()
    path = (root / sweep_id / name).resolve()
    if path.parent.parent != root or not path.is_file():
        raise HTTPException(404, "no such sweep report")
    return FileResponse(path)


@router.post("/models/{version}/promote")
async def promote(version: str, state: State, viewer: Who, form: Annotated[PromoteForm, Form()]) -> Response:
    check_csrf(viewer, form.csrf)
    Access.require_admin(viewer.who, "promotes models")
    if not (form.reason or "").strip():
        raise InvalidInput("say why this model should serve: promoting needs a reason", "reason_required")
    if not form.confirm:
        raise InvalidInput("tick the confirmation box to promote", "confirmation_required")
    await asyncio.to_thread(
        state.registry.promote, version, actor=viewer.who.name, reason=form.reason or None, alias=form.alias
    )
    return see_other("/models", done="promoted")


@router.post("/models/rollback")
async def rollback(state: State, viewer: Who, form: Annotated[PromoteForm, Form()]) -> Response:
    check_csrf(viewer, form.csrf)
    Access.require_admin(viewer.who, "rolls back models")
    await asyncio.to_thread(
        state.registry.rollback, actor=viewer.who.name, reason=form.reason or None, alias=form.alias
    )
    return see_other("/models", done="rolled_back")
