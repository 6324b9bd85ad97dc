"""`lotlens images prune`: kept bytes of images nobody shows go; images a dataset uses, fixed ones
and recently shown ones stay; old served-image rows go. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lotlens.cli import app
from lotlens.config import Settings
from lotlens.service import Item, Service
from lotlens.storage import Storage
from lotlens.store import Store
from lotlens.store.images import ImageFolder
from lotlens.train.retention import prune
from lotlens.vision import Pipeline

runner = CliRunner()
DAY = timedelta(days=1)


def test_prune_keeps_what_datasets_fixes_and_recent_sightings_need(
    tmp_path: Path, store: Store, pipeline: Pipeline, server: str
) -> None:
    settings = Settings(data_dir=tmp_path, allow_private_addresses=True, verify_fraction=0.0)
    service = Service(settings, store, lambda: pipeline)
    urls = [f"{server}/img/keep-{n}.jpg?name=car&salt=ret{n}" for n in range(4)]
    results = asyncio.run(service.classify("a", [Item(u) for u in urls]))
    fixed, in_dataset, stale, stale2 = (r.image_key or "" for r in results)
    folder = ImageFolder(Storage.from_settings(settings))

    def path(key: str) -> Path:
        return settings.data_dir / folder.relpath(key)

    assert all(path(k).is_file() for k in (fixed, in_dataset, stale, stale2))
    store.add_fix(fixed, "color", "Red", actor="ana", role="staff", scope="global", advertiser=None)
    ds = tmp_path / "datasets" / "ds-000000000001"
    ds.mkdir(parents=True)
    (ds / "manifest.csv").write_text(
        f"path,type,color,group,split,image_key\n{folder.relpath(in_dataset)},Dealer,Blue,a,train,{in_dataset}\n"
    )
    orphan = "c:" + "ab" * 32  # kept bytes no sighting names (an interrupted batch): judged by the file's age
    folder.put(orphan, b"bytes")
    old = (datetime.now(UTC) - 60 * DAY).timestamp()
    os.utime(path(orphan), (old, old))
    today = datetime.now(UTC).date()
    store.count_served("a", [(fixed, "m1", "Dealer", "model")], day=today - 100 * DAY)
    store.count_served("a", [(fixed, "m1", "Dealer", "model")], day=today - 10 * DAY)

    # Today nothing has been unseen for 30 days: only the old orphan goes.
    dry = prune(settings, store, 30 * DAY, 90 * DAY, dry_run=True)
    assert (dry.images, dry.in_dataset, dry.fixed, dry.recent, dry.removed) == (5, 1, 1, 2, [orphan])
    assert path(orphan).is_file()  # a dry run deletes nothing
    assert dry.bytes_freed == len(b"bytes")
    # Forty days on, the two images nobody fixed or put in a dataset go too.
    later = prune(settings, store, 30 * DAY, 90 * DAY, now=datetime.now(UTC) + 40 * DAY)
    assert sorted(later.removed) == sorted([stale, stale2, orphan])
    assert later.bytes_freed > 0
    assert not any(path(k).exists() for k in (stale, stale2, orphan))
    assert path(fixed).is_file()
    assert path(in_dataset).is_file()
    assert later.served_rows_removed == 1  # the row 140 days old by then; the one 50 days old stays
    assert sorted({c[0] for c in store.answer_counts(today - 365 * DAY)}) == [today - 10 * DAY, today]
    # An image shown again is recent again, and a removed image is fetched anew when asked.
    again = asyncio.run(service.classify("a", [Item(urls[2])]))
    assert again[0].status == "ok"


def test_prune_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path))
    folder = ImageFolder(Storage.from_settings(Settings(data_dir=tmp_path)))

    def path(key: str) -> Path:
        return tmp_path / folder.relpath(key)

    key = "c:" + "cd" * 32
    folder.put(key, b"old bytes")
    old = (datetime.now(UTC) - 10 * DAY).timestamp()
    os.utime(path(key), (old, old))
    res = runner.invoke(app, ["images", "prune", "--older-than", "7", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert (r["images"], r["removed"], r["dry_run"]) == (1, 1, True)
    assert path(key).is_file()
    res = runner.invoke(app, ["images", "prune", "--older-than", "7"])
    assert res.exit_code == 0, res.output
    assert "deleted 1" in res.stdout
    assert not path(key).exists()
    assert runner.invoke(app, ["images", "prune", "--older-than", "0"]).exit_code == 2
