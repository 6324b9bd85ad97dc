"""One color per vehicle: the photos of one (advertiser, vehicle_id) vote, weighted by confidence.

Each image keeps its own answer; the vehicle color is what its photos say together. Placeholders
have no color, and Stock images are studio shots that may show another car of the same model,
so neither votes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from lotlens.labels import PLACEHOLDER

STOCK = "Stock"

# A vehicle color at least this sure makes a disagreeing image a doubt for the review queue.
CONFIDENT_VEHICLE = 0.8


class ImageAnswer(Protocol):
    """What the vote reads of one image's answer (a `Prediction` has both)."""

    @property
    def type(self) -> str | None: ...

    @property
    def color_scores(self) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class VehicleColor:
    """The vehicle's color (None when no photo votes), how sure the vote is, and how many voted."""

    color: str | None
    confidence: float
    votes: int


def votes_for(answer: ImageAnswer) -> bool:
    """Whether an image takes part in its vehicle's vote: a photo of this vehicle with a color."""
    return answer.type not in (PLACEHOLDER, STOCK) and bool(answer.color_scores)


def vehicle_color(answers: Sequence[ImageAnswer]) -> VehicleColor:
    """The confidence-weighted vote of a vehicle's photos.

    Each voting image adds its color probabilities, weighted by its own confidence (its top
    probability), so one sure photo outweighs several hesitant ones. The vehicle's confidence is
    the winning color's share of the weighted mass: 1.0 when every photo is sure of the same color.
    """
    totals: dict[str, float] = {}
    mass, votes = 0.0, 0
    for answer in answers:
        if not votes_for(answer):
            continue
        scores = answer.color_scores
        weight = max(scores.values())
        for color, p in scores.items():
            totals[color] = totals.get(color, 0.0) + weight * float(p)
        mass += weight * sum(float(p) for p in scores.values())
        votes += 1
    if not votes or mass <= 0:
        return VehicleColor(None, 0.0, 0)
    best = max(totals, key=lambda c: (totals[c], c))
    return VehicleColor(best, round(totals[best] / mass, 4), votes)


def doubtful(answer: ImageAnswer, vehicle: VehicleColor, min_confidence: float = CONFIDENT_VEHICLE) -> bool:
    """An image whose own color disagrees with a confident vehicle color (a review-queue doubt)."""
    if vehicle.color is None or vehicle.confidence < min_confidence or not votes_for(answer):
        return False
    own = max(answer.color_scores, key=lambda c: answer.color_scores[c])
    return own != vehicle.color
