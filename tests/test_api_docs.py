"""`/docs` works with no internet (every asset it loads is served here) and offers the Authorize
button: the OpenAPI document declares the bearer scheme on the routes that need a key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lotlens.api import create_app
from lotlens.config import ApiKey, Settings
from lotlens.store import Store
from lotlens.vision import Pipeline


@pytest.fixture
def client(tmp_path: Path, pipeline: Pipeline) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, api_keys=[ApiKey(name="s", key="k" * 32, role="scraper")])
    store = Store.from_url(settings.resolved_database_url())
    with TestClient(create_app(settings, store, pipeline)) as c:
        yield c
    store.engine.dispose()


def test_docs_load_only_local_assets(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", page.text)
    found = [a or b for a, b in urls]
    assert "/docs/assets/swagger-ui-bundle.js" in found
    assert "/docs/assets/swagger-ui.css" in found
    assert "/openapi.json" in found
    for url in found:
        assert url.startswith(("/", "data:")), f"/docs loads {url} from outside"
        if url.startswith("/"):
            res = client.get(url)
            assert res.status_code == 200, url
            assert len(res.content) > 1000, url
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in bundle.headers["content-type"]
    assert "http" not in page.text.replace("http-equiv", "")  # no absolute URL at all


def test_openapi_declares_the_bearer_scheme_for_the_authorize_button(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")  # what Swagger UI 5 (the bundled one) reads
    schemes = spec["components"]["securitySchemes"]
    [(name, scheme)] = [(n, s) for n, s in schemes.items() if s.get("scheme") == "bearer"]
    assert scheme["type"] == "http"
    classify = spec["paths"]["/v1/classify"]["post"]
    assert {name: []} in classify["security"]
    assert "/docs" not in spec["paths"]
