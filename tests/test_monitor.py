"""Watch figures: images answered per day, advertiser, model and type; fix rates; flags; /metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lotlens.cli import app
from lotlens.config import Settings
from lotlens.service import Item, Service
from lotlens.store import Store
from lotlens.train.monitor import watch
from lotlens.vision import Pipeline

runner = CliRunner()


def keys(n: int, start: int = 0) -> list[str]:
    return [f"c:{i:064x}" for i in range(start, start + n)]


def served(store: Store, advertiser: str, counts: dict[tuple[str, str, str], int], day: date | None = None) -> None:
    """`counts` distinct images served to `advertiser`, per (model version, type, source)."""
    rows, start = [], 0
    for (version, type_, source), n in counts.items():
        rows += [(k, version, type_, source) for k in keys(n, start)]
        start += n
    store.count_served(advertiser, rows, day=day)


def test_counts_fix_rates_and_flags(tmp_path: Path, pipeline: Pipeline, server: str) -> None:
    settings = Settings(data_dir=tmp_path, allow_private_addresses=True)
    store = Store.from_url(settings.resolved_database_url())
    today = datetime.now(UTC).date()
    # A quiet baseline: a week ago dealer a got 1,000 Dealer answers and one fix.
    served(store, "a", {(pipeline.version, "Dealer", "model"): 1000}, day=today - timedelta(days=7))
    urls = [f"{server}/img/mon-{n}.jpg?name={n}" for n in ("car", "blue", "yellow")]
    service = Service(settings, store, lambda: pipeline)
    results = asyncio.run(service.classify("a", [Item(u) for u in urls]))
    again = asyncio.run(service.classify("a", [Item(u) for u in urls]))  # the same batch: from the cache
    assert {r.source for r in again} == {"cache"}
    asyncio.run(service.classify("a", [Item(u) for u in urls]))  # and a third time
    fixed = results[0]
    store.add_fix(fixed.image_key, "color", "Red", actor="a1", role="advertiser:a", scope="advertiser", advertiser="a")
    w = watch(store, days=14)
    [recent] = [f for f in w.recent if f.advertiser == "a"]
    # Three images asked three times: three answers, each image once a day (the last answer's source).
    assert (recent.model_version, recent.answers, recent.fixes) == (pipeline.version, 3, 1)
    assert recent.fix_rate == 1000 / 3
    assert sum(recent.types.values()) == 3
    assert recent.sources == {"cache": 3}
    assert sum(n for *_, n in store.answer_counts(today)) == 3
    base = w.baseline[("a", pipeline.version)]
    assert (base.answers, base.fix_rate) == (1000, 0.0)
    assert f"a on {pipeline.version}: fix rate 333.3/1000 (was 0.0)" in w.flags
    # The same figures, watched after another model became champion, say who served the answers.
    later = watch(store, days=14, champion="newer-1")
    now = f"served by {pipeline.version}, the champion is now newer-1"
    assert f"a on {pipeline.version}: fix rate 333.3/1000 (was 0.0); {now}" in later.flags


def test_an_image_counts_once_a_day_per_advertiser_under_its_last_answer(store: Store) -> None:
    today = datetime.now(UTC).date()
    [k1, k2] = keys(2)
    store.count_served("a", [(k1, "m1", "Dealer", "model"), (k2, "m1", "Stock", "model")])
    store.count_served("a", [(k1, "m1", "Dealer", "cache")] * 5)  # asked again and again
    store.count_served("a", [(k2, "m2", "Dealer", "model")])  # reclassified, then asked by the new model
    store.count_served("b", [(k1, "m1", "Dealer", "cache")])  # another advertiser counts on its own
    store.count_served("a", [(k1, "m1", "Dealer", "cache")], day=today - timedelta(days=1))  # and another day
    counts = sorted(store.answer_counts(today - timedelta(days=1)))
    assert counts == sorted(
        [
            (today, "a", "m1", "Dealer", "cache", 1),
            (today, "a", "m2", "Dealer", "model", 1),
            (today, "b", "m1", "Dealer", "cache", 1),
            (today - timedelta(days=1), "a", "m1", "Dealer", "cache", 1),
        ]
    )
    assert store.forget_served(today) == 1
    assert {c[0] for c in store.answer_counts(today - timedelta(days=5))} == {today}


def test_type_mix_shift_is_flagged(tmp_path: Path) -> None:
    store = Store.from_url(Settings(data_dir=tmp_path).resolved_database_url())
    today = datetime.now(UTC).date()
    served(store, "c", {("m1", "Dealer", "model"): 90, ("m1", "Placeholder", "model"): 10}, today - timedelta(days=3))
    served(store, "c", {("m1", "Dealer", "model"): 50, ("m1", "Placeholder", "model"): 50})
    served(store, "d", {("m1", "Dealer", "model"): 88, ("m1", "Placeholder", "model"): 12}, today - timedelta(days=3))
    served(store, "d", {("m1", "Dealer", "model"): 90, ("m1", "Placeholder", "model"): 10})
    flags = watch(store).flags
    assert flags == ["c on m1: type mix moved by 40% (90/0/10 -> 50/0/50)"]


def test_monitor_cli_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline) -> None:
    from fastapi.testclient import TestClient

    from lotlens.api import create_app

    settings = Settings(data_dir=tmp_path)
    store = Store.from_url(settings.resolved_database_url())
    served(store, "b", {("m1", "Stock", "model"): 40, ("m1", "Placeholder", "cache"): 10})
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path))
    res = runner.invoke(app, ["monitor"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "m1" in res.stdout
    assert "80" in res.stdout  # 80% Stock
    assert "40/10" in res.stdout  # from the model / from the cache
    with TestClient(create_app(settings, store, pipeline)) as c:
        text = c.get("/metrics").text
    assert 'lotlens_answers_last_day{model_version="m1"} 50.0' in text
    assert 'lotlens_fix_rate_per_1000_last_day{model_version="m1"} 0.0' in text
