"""Request and response bodies of the API (pydantic), apart from the store's tables and records.

Free text from callers goes through `Text`: a NUL character or a lone surrogate is a 422 here,
before any store call, rather than a database error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from lotlens.store.repository import FixRecord


def _clean(value: str) -> str:
    if "\0" in value:
        raise ValueError("NUL characters are not accepted")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("not valid Unicode (a lone surrogate)") from exc
    return value


Text = Annotated[str, AfterValidator(_clean)]
Advertiser = Annotated[Text, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
TypeName = Literal["Dealer", "Stock", "Placeholder"]
ColorName = Literal[
    "Black", "Blue", "Brown", "Burgundy", "Green", "Grey", "Orange", "Pink", "Purple", "Red", "White", "Yellow"
]  # fmt: skip
Source = Literal["model", "cache", "manual"]


# An odd URL, vehicle id or color is one image's problem (skipped, cleaned, or kept beside the
# answer), never a 422 for the whole batch: these limits only bound memory.
class ImageIn(BaseModel):
    url: str = Field(max_length=65536, description="fetched exactly as given; a bad one is skipped as `bad_url`")
    vehicle_id: str | None = Field(default=None, max_length=4096, description="cut to 128 characters")
    color: str | None = Field(
        default=None,
        max_length=4096,
        description="the color the scrape says: a palette color or a synonym is answered as is, "
        "any other value is kept in `scraped_color` and the model predicts",
    )


class ClassifyIn(BaseModel):
    advertiser: Advertiser
    images: list[ImageIn]


class Scores(BaseModel):
    type: dict[str, float] = {}
    color: dict[str, float] = {}


class ResultOut(BaseModel):
    url: str
    status: Literal["ok", "skipped"]
    reason: str | None = Field(description="why it was skipped: bad_url, blocked_address, http_404, deadline, ...")
    image_key: str | None
    type: TypeName | None
    color: ColorName | None
    source: Source | None
    scores: Scores
    model_version: str | None
    near_duplicate_of: str | None = None
    scraped_color: str | None = Field(default=None, description="the color the scrape gave, as given")
    color_confident: bool | None = Field(
        default=None, description="false when the color's calibrated score is under LOTLENS_LOW_CONFIDENCE"
    )
    vehicle_color: ColorName | None = Field(
        default=None, description="one color per vehicle: the confidence-weighted vote of its photos"
    )
    vehicle_color_confidence: float | None = None


class ClassifyOut(BaseModel):
    results: list[ResultOut]


class FixIn(BaseModel):
    image_key: Annotated[Text, Field(min_length=3, max_length=66)]
    advertiser: Annotated[Text, Field(max_length=128)] | None = None
    type: TypeName | None = None
    color: Annotated[Text, Field(max_length=32)] | None = Field(
        default=None, description="a palette color or a synonym (Silver is Grey); null clears it"
    )
    scope: Literal["advertiser", "global"] = "advertiser"
    comment: Annotated[Text, Field(max_length=2000)] | None = None

    def changes(self) -> dict[str, str | None]:
        """The fields the request names (a color given as null clears it)."""
        return {f: getattr(self, f) for f in ("type", "color") if f in self.model_fields_set}


class DecisionIn(BaseModel):
    action: Literal["accept", "reject", "relabel"]
    value: Annotated[Text, Field(max_length=32)] | None = Field(default=None, description="the label, for relabel")


class PromoteIn(BaseModel):
    alias: Literal["champion", "challenger"] = "champion"
    reason: Annotated[Text, Field(max_length=2000)] | None = None


class FixOut(BaseModel):
    id: int
    image_key: str
    advertiser: str | None
    field: Literal["type", "color"]
    old: str | None
    new: str | None
    actor: str
    role: str
    scope: Literal["advertiser", "global"]
    comment: str | None
    time: datetime

    @classmethod
    def of(cls, f: FixRecord) -> FixOut:
        return cls(
            id=f.id,
            image_key=f.content_key,
            advertiser=f.advertiser,
            field=f.field,  # type: ignore[arg-type]
            old=f.old_value,
            new=f.new_value,
            actor=f.actor,
            role=f.role,
            scope=f.scope,  # type: ignore[arg-type]
            comment=f.comment,
            time=f.created_at,
        )


class ImageOut(BaseModel):
    image_key: str
    advertiser: str | None
    type: TypeName | None
    color: ColorName | None
    source: Source
    scores: Scores
    model_version: str | None
    history: list[FixOut]


class ModelOut(BaseModel):
    version: str
    name: str
    path: str
    metrics: dict[str, Any]
    dataset: str | None
    registered_by: str
    created_at: datetime


class PromotionOut(BaseModel):
    id: int
    alias: str
    from_version: str | None
    to_version: str
    action: Literal["promote", "rollback"]
    actor: str
    reason: str | None
    metrics: dict[str, Any]
    created_at: datetime


NEXT = "the `cursor` of the next page; null on the last page"


class FixPage(BaseModel):
    fixes: list[FixOut]
    next_cursor: str | None = Field(description=NEXT)


class ModelsOut(BaseModel):
    serving: str
    aliases: dict[str, str]
    models: list[ModelOut] = Field(description="one page of the registered models, oldest first")
    next_cursor: str | None = Field(description=NEXT)


class PromotionPage(BaseModel):
    promotions: list[PromotionOut]
    next_cursor: str | None = Field(description=NEXT)


class ReviewItemOut(BaseModel):
    id: int
    dataset: str
    content_key: str
    field: Literal["type", "color"]
    kind: Literal["conflict", "doubt"]
    candidates: list[dict[str, Any]]
    model_value: str | None
    score: float
    status: Literal["pending", "accepted", "rejected", "relabelled"]
    decided_value: str | None
    decided_by: str | None
    decided_at: datetime | None


class ReviewPage(BaseModel):
    items: list[ReviewItemOut]
    next_cursor: str | None = Field(description=NEXT)


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    model: str
    store: str
