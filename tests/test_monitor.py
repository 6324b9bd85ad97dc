"""Watch figures: answers per day, advertiser, model and type; fix rates; flags; /metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
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


def test_counts_fix_rates_and_flags(tmp_path: Path, pipeline: Pipeline, server: str) -> None:
    settings = Settings(data_dir=tmp_path, allow_private_addresses=True)
    store = Store.from_url(settings.resolved_database_url())
    today = datetime.now(UTC).date()
    # A quiet baseline: a week ago dealer a got 1,000 Dealer answers and one fix.
    store.count_answers("a", {(pipeline.version, "Dealer", "model"): 1000}, day=today - timedelta(days=7))
    urls = [f"{server}/img/mon-{n}.jpg?name={n}" for n in ("car", "blue", "yellow")]
    service = Service(settings, store, lambda: pipeline)
    results = asyncio.run(service.classify("a", [Item(u) for u in urls]))
    asyncio.run(service.classify("a", [Item(u) for u in urls]))  # the same batch again: answered from cache
    fixed = results[0]
    store.add_fix(fixed.image_key, "color", "Red", actor="a1", role="advertiser:a", scope="advertiser", advertiser="a")
    w = watch(store, days=14)
    [recent] = [f for f in w.recent if f.advertiser == "a"]
    assert (recent.model_version, recent.answers, recent.fixes) == (pipeline.version, 6, 1)
    assert recent.fix_rate == 1000 / 6
    assert sum(recent.types.values()) == 6
    counts = store.answer_counts(today)
    assert {src for *_, src, _n in counts} == {"model", "cache"}
    base = w.baseline[("a", pipeline.version)]
    assert (base.answers, base.fix_rate) == (1000, 0.0)
    assert any(f.startswith(f"a on {pipeline.version}: fix rate 166.7/1000") for f in w.flags)


def test_type_mix_shift_is_flagged(tmp_path: Path) -> None:
    store = Store.from_url(Settings(data_dir=tmp_path).resolved_database_url())
    today = datetime.now(UTC).date()
    store.count_answers(
        "c", {("m1", "Dealer", "model"): 90, ("m1", "Placeholder", "model"): 10}, day=today - timedelta(days=3)
    )
    store.count_answers("c", {("m1", "Dealer", "model"): 50, ("m1", "Placeholder", "model"): 50})
    store.count_answers(
        "d", {("m1", "Dealer", "model"): 88, ("m1", "Placeholder", "model"): 12}, day=today - timedelta(days=3)
    )
    store.count_answers("d", {("m1", "Dealer", "model"): 90, ("m1", "Placeholder", "model"): 10})
    flags = watch(store).flags
    assert flags == ["c on m1: type mix moved by 40% (90/0/10 -> 50/0/50)"]


def test_monitor_cli_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline) -> None:
    from fastapi.testclient import TestClient

    from lotlens.api import create_app

    settings = Settings(data_dir=tmp_path)
    store = Store.from_url(settings.resolved_database_url())
    store.count_answers("b", {("m1", "Stock", "model"): 40, ("m1", "Placeholder", "cache"): 10})
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path))
    res = runner.invoke(app, ["monitor"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "m1" in res.stdout
    assert "80" in res.stdout  # 80% Stock
    with TestClient(create_app(settings, store, pipeline)) as c:
        text = c.get("/metrics").text
    assert 'lotlens_answers_last_day{model_version="m1"} 50.0' in text
    assert 'lotlens_fix_rate_per_1000_last_day{model_version="m1"} 0.0' in text
