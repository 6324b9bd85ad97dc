"""`GET /v1/images/{image_key}`: one image's answer as an advertiser sees it, with its history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from lotlens.access import Principal
from lotlens.api.deps import AppState, Caller, State
from lotlens.api.schemas import FixOut, ImageOut, Scores, Text

router = APIRouter(tags=["images"])


def image_out(state: AppState, caller: Principal, image_key: str, advertiser: str | None) -> ImageOut:
    """The answer `caller` reads in `advertiser`'s view, with the history it may read (blocking)."""
    advertiser, answer = state.access.answer(caller, image_key, advertiser)
    return ImageOut(
        image_key=image_key,
        advertiser=advertiser,
        type=answer.type,  # type: ignore[arg-type]
        color=answer.color,  # type: ignore[arg-type]
        source=answer.source,  # type: ignore[arg-type]
        scores=Scores(**{k: answer.scores.get(k, {}) for k in ("type", "color")}),
        model_version=answer.model_version,
        history=[FixOut.of(f) for f in state.access.fix_history(caller, advertiser, content_key=image_key)],
    )


@router.get("/v1/images/{image_key}", response_model=ImageOut, operation_id="get_image")
def image(
    image_key: Annotated[Text, Path(max_length=66)],
    state: State,
    caller: Caller,
    advertiser: Annotated[Text | None, Query(max_length=128)] = None,
) -> ImageOut:
    """An image's answer as `advertiser` sees it, with its fix history."""
    return image_out(state, caller, image_key, advertiser)
