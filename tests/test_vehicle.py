"""Vehicle color: the confidence-weighted vote of one vehicle's photos."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lotlens.vision.vehicle import VehicleColor, doubtful, vehicle_color, votes_for


@dataclass(frozen=True)
class Answer:
    type: str
    color_scores: dict[str, float] = field(default_factory=dict)


def sure(color: str, p: float, other: str = "Grey") -> Answer:
    return Answer("Dealer", {color: p, other: round(1 - p, 6)})


def test_agreeing_photos_give_their_color_with_full_confidence() -> None:
    v = vehicle_color([sure("Red", 1.0, "Blue"), sure("Red", 1.0, "Blue")])
    assert v == VehicleColor("Red", 1.0, 2)


def test_one_sure_photo_outweighs_three_hesitant_ones() -> None:
    hesitant = Answer("Dealer", {"White": 0.4, "Blue": 0.3, "Black": 0.3})
    answers = [hesitant, hesitant, hesitant, Answer("Dealer", {"Grey": 0.9, "White": 0.1})]
    # A plain sum says White (1.3 against Grey 0.9). Weighted by confidence (0.4 x 3, 0.9):
    # White 3 * 0.16 + 0.09 = 0.57, Grey 0.81, of a mass of 2.1.
    v = vehicle_color(answers)
    assert v.color == "Grey"
    assert v.confidence == pytest.approx(0.81 / 2.1, abs=1e-4)
    assert v.votes == 4


def test_placeholders_and_stock_images_do_not_vote() -> None:
    answers = [
        Answer("Placeholder"),
        Answer("Stock", {"White": 0.99, "Red": 0.01}),
        Answer("Stock", {"White": 0.99, "Red": 0.01}),
        sure("Red", 0.7, "White"),
    ]
    assert vehicle_color(answers) == VehicleColor("Red", 0.7, 1)
    assert not votes_for(answers[0])
    assert not votes_for(answers[1])


def test_no_voting_photo_means_no_vehicle_color() -> None:
    assert vehicle_color([]) == VehicleColor(None, 0.0, 0)
    assert vehicle_color([Answer("Placeholder"), Answer("Dealer")]) == VehicleColor(None, 0.0, 0)


def test_an_image_disagreeing_with_a_confident_vehicle_is_a_doubt() -> None:
    answers = [sure("Black", 0.95), sure("Black", 0.9), sure("Black", 0.97), sure("Grey", 0.6, "Black")]
    v = vehicle_color(answers)
    assert v.color == "Black"
    assert v.confidence >= 0.8
    assert doubtful(answers[3], v)
    assert not doubtful(answers[0], v)
    assert not doubtful(Answer("Stock", {"Grey": 1.0}), v)


def test_a_hesitant_vehicle_raises_no_doubt() -> None:
    answers = [sure("Black", 0.55), sure("Grey", 0.55, "Black")]
    v = vehicle_color(answers)
    assert v.confidence < 0.8
    assert not doubtful(answers[1], v)
