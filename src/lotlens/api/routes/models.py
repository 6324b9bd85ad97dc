"""`/v1/models`: the registry, promotion and rollback (admin)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path

from lotlens.api import paging
from lotlens.api.deps import Caller, State
from lotlens.api.schemas import ModelOut, ModelsOut, PromoteIn, PromotionOut, PromotionPage, Text

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelsOut, operation_id="list_models")
def models(
    state: State, caller: Caller, cursor: paging.Cursor = None, limit: paging.Limit = paging.DEFAULT_LIMIT
) -> ModelsOut:
    """The version serving now, the aliases, and a page of the registered models, oldest first
    (the promotion log is `GET /v1/promotions`)."""
    state.access.require_staff(caller)
    after = paging.decode(cursor, "models", (datetime, str))
    rows = state.registry.model_page(after, limit + 1)
    rows, next_cursor = paging.page(rows, limit, "models", lambda m: (m.created_at, m.version))
    return ModelsOut(
        serving=state.champion().version,
        aliases=state.registry.aliases(),
        models=[ModelOut(**asdict(m)) for m in rows],
        next_cursor=next_cursor,
    )


@router.get("/v1/promotions", response_model=PromotionPage, operation_id="list_promotions")
def promotions(
    state: State,
    caller: Caller,
    alias: Literal["champion", "challenger"] | None = None,
    cursor: paging.Cursor = None,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
) -> PromotionPage:
    """The promotion log, oldest first, a page at a time: who moved which alias, when, why, on
    which metrics."""
    state.access.require_staff(caller)
    after = paging.decode(cursor, "promotions", (datetime, int))
    rows = state.registry.promotion_page(alias, after, limit + 1)
    rows, next_cursor = paging.page(rows, limit, "promotions", lambda p: (p.created_at, p.id))
    return PromotionPage(promotions=[PromotionOut(**asdict(p)) for p in rows], next_cursor=next_cursor)


@router.post("/v1/models/{version}/promote", status_code=201, response_model=PromotionOut, operation_id="promote")
def promote(
    version: Annotated[Text, Path(max_length=64)], body: PromoteIn, state: State, caller: Caller
) -> PromotionOut:
    """Make `version` the champion (or challenger); running servers follow within the poll interval."""
    state.access.require_admin(caller, "promotes models")
    rec = state.registry.promote(version, actor=caller.name, reason=body.reason, alias=body.alias)
    return PromotionOut(**asdict(rec))


@router.post("/v1/models/rollback", status_code=201, response_model=PromotionOut, operation_id="rollback")
def rollback(body: PromoteIn, state: State, caller: Caller) -> PromotionOut:
    """Point the alias back at the model it had before its latest change."""
    state.access.require_admin(caller, "rolls back models")
    return PromotionOut(**asdict(state.registry.rollback(actor=caller.name, reason=body.reason, alias=body.alias)))
