"""The models page links each registered model's card; the card page shows it to staff only."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from lotlens.vision.pipeline import default_model_dir

from seeded import Site, sign_in

pytestmark = pytest.mark.integration  # the site is seeded with ../shared/data/dev photos


def test_models_page_links_each_card_and_the_card_shows_its_data_metrics_and_limits(
    site: Site, app_client: TestClient
) -> None:
    sign_in(app_client, "staff")
    page = app_client.get("/models")
    bundled = json.loads((default_model_dir() / "card.json").read_text())
    assert f'href="/models/{bundled["version"]}/card"' in page.text
    assert 'href="/models/lotlens-candidate/card"' in page.text
    card = app_client.get(f"/models/{bundled['version']}/card")
    assert card.status_code == 200
    assert f'Model card: <span class="version">{bundled["version"]}</span>' in card.text
    assert "Intended use" in card.text
    for c in bundled["metrics"]["per_class"]["type"]:
        assert f'<td>{c["label"]}</td><td class="num">{c["n"]}</td>' in card.text
    for limit in bundled["known_limits"]:
        assert f"<li>{limit.replace(chr(39), '&#39;')}</li>" in card.text
    # A model registered without a card gets the one its model.json makes.
    made = app_client.get("/models/lotlens-candidate/card")
    assert made.status_code == 200
    assert "Known limits" in made.text
    assert app_client.get("/models/nope/card").status_code == 404
    sign_in(app_client, "a")
    assert app_client.get(f"/models/{bundled['version']}/card").status_code == 403
