"""Model cards: the bundled model ships the card its model.json makes, and its training images."""

from __future__ import annotations

import json

from lotlens.train.card import card_markdown, make_card
from lotlens.vision.pipeline import default_model_dir

REGENERATE = (
    "regenerate: lotlens models card src/lotlens/models/default --write "
    "--training-manifest build/splits/dev-seed0/train+extra.csv --images-root ../shared/data"
)


def test_the_bundled_model_ships_its_current_card() -> None:
    folder = default_model_dir()
    meta = json.loads((folder / "model.json").read_text())
    card = make_card(meta)
    assert json.loads((folder / "card.json").read_text()) == card, REGENERATE
    assert (folder / "model_card.md").read_text() == card_markdown(card), REGENERATE
    seen = json.loads((folder / "training_images.json").read_text())
    assert seen["manifest_sha256"] == meta["manifest"]["sha256"], REGENERATE
    assert len(seen["sha256"]) == meta["manifest"]["rows"] - len(meta["data"]["skipped"])


def test_a_card_names_weak_classes_and_sources() -> None:
    meta = {
        "version": "m-1",
        "metrics": {
            "type": {"support": {"Stock": 10}, "precision": {"Stock": 0.9}, "recall": {"Stock": 0.5}},
            "groups": [{"group": "big", "n": 90, "accuracy": 0.99}, {"group": "small", "n": 9, "accuracy": 0.5}],
        },
        "data": {"color": {"Red": 400, "Pink": 12}},
    }
    card = make_card(meta)
    assert "type Stock: recall 50% on 10 validation rows." in card["known_limits"]
    assert "color Pink: only 12 training rows (real and recolored)." in card["known_limits"]
    assert not any(line.startswith("color Red") for line in card["known_limits"])
    assert "source small: type accuracy 50% on 9 validation rows." in card["known_limits"]
    assert [g["group"] for g in card["metrics"]["per_source"]["type"]] == ["small", "big"]
    assert "| type | Stock | 10 | 90.0% | 50.0% |" in card_markdown(card)
    assert card["type_head"] == "logistic (C=-)"  # a model.json of before the config was written


def test_a_card_names_the_type_head() -> None:
    network = {"type_head": "network", "type_members": 5, "type_hidden": 64, "type_alpha": 10.0}
    card = make_card({"version": "m-2", "config": network})
    assert card["type_head"] == "5 networks of one hidden layer (64 units, L2 10.0), probabilities averaged"
    assert "type head 5 networks of one hidden layer" in card_markdown(card)
    assert make_card({"config": {"type_c": 0.3}})["type_head"] == "logistic (C=0.3)"
