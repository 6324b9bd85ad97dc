"""`/v1/models`: the registry, promotion and rollback (admin)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path

from lotlens.api.deps import Caller, State
from lotlens.api.schemas import ModelOut, ModelsOut, PromoteIn, PromotionOut, Text

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelsOut, operation_id="list_models")
def models(state: State, caller: Caller) -> ModelsOut:
    """Registered models, the aliases, the promotion log and the version serving now."""
    state.access.require_staff(caller)
    return ModelsOut(
        serving=state.champion().version,
        aliases=state.registry.aliases(),
        models=[ModelOut(**asdict(m)) for m in state.registry.models()],
        promotions=[PromotionOut(**asdict(p)) for p in state.registry.history()],
    )


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
