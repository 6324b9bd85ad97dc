"""What a hostile scrape can put on a page: scripts as links, formulas in CSV cells, odd advertiser
ids, and times without a zone. Generated data and a scripted pipeline: no dev set needed."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lotlens.config import Settings
from lotlens.store import Store
from lotlens.web import create_app
from lotlens.web.pages import csv_cell, web_url

from fakes import FakePipeline


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    """No keys configured: the caller is the local admin (serve binds to loopback only then)."""
    settings = Settings(data_dir=tmp_path, keep_images=False)
    store = Store.from_url(settings.resolved_database_url())
    with TestClient(create_app(settings, store, FakePipeline()), base_url="http://testserver") as c:  # type: ignore[arg-type]
        yield c, store
    store.engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cdn.test/a.jpg", "https://cdn.test/a.jpg"),
        ("HTTP://cdn.test/a.jpg", "HTTP://cdn.test/a.jpg"),
        ("javascript:alert(1)", None),
        (" JavaScript:alert(1)", None),
        ("data:text/html,x", None),
        ("//cdn.test/a.jpg", None),
        ("", None),
    ],
)
def test_only_http_urls_become_links(url: str, expected: str | None) -> None:
    assert web_url(url) == expected


@pytest.mark.parametrize("value", ["=cmd|' /C calc'!A0", "+1", "-1", "@SUM(1)", "\tx", "\rx"])
def test_csv_cells_that_a_spreadsheet_would_run_are_text(value: str) -> None:
    assert csv_cell(value) == "'" + value


def test_a_skipped_javascript_url_is_text_not_a_link(local: tuple[TestClient, Store]) -> None:
    client, store = local
    store.skip_many("dealer/one", [("javascript:alert(document.cookie)", "bad_url", None)])
    page = client.get("/advertisers/dealer%2Fone")  # an advertiser id with a slash still has its page
    assert page.status_code == 200, page.text
    assert "alert(document.cookie)" in page.text
    assert 'href="javascript:' not in page.text


def test_fixes_csv_neutralises_every_text_cell_and_times_carry_their_zone(local: tuple[TestClient, Store]) -> None:
    client, store = local
    store.put_classified([("c:" + "1" * 64, 1, 10, 10, 100)], [("c:" + "1" * 64, "m", "Dealer", "Red", {}, None)])
    store.add_fix(
        "c:" + "1" * 64, "color", "Blue", actor="@ana", role="staff", scope="advertiser", advertiser="=evil",
        comment="\tlooks blue",
    )  # fmt: skip
    rows = list(csv.reader(io.StringIO(client.get("/fixes.csv").text)))
    header, row = rows[0], rows[1]
    cells = dict(zip(header, row, strict=True))
    assert cells["advertiser"] == "'=evil"
    assert cells["actor"] == "'@ana"
    assert cells["comment"] == "'\tlooks blue"
    assert cells["time"].endswith("+00:00")  # SQLite keeps no zone: read back as UTC
    assert store.fixes()[0].created_at.tzinfo is not None
