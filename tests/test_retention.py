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


def _age(path: Path, days: float) -> None:
    then = (datetime.now(UTC) - days * DAY).timestamp()
    os.utime(path, (then, then))


def test_cache_prune_removes_what_can_be_made_again(tmp_path: Path, store: Store) -> None:
    from lotlens.store.registry import Registry
    from lotlens.train.retention import prune_cache
    from lotlens.web.images import ThumbnailFolder

    from synth import car, jpeg

    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    cache = settings.resolved_cache_dir()
    storage = Storage.from_settings(settings)
    images = ImageFolder(storage)
    kept, old, gone = ("c:" + c * 64 for c in "abc")
    for key in (kept, old, gone):
        images.put(key, jpeg(car("Red", "white", 1)))
    thumbs = ThumbnailFolder(storage, cache)
    for key in (kept, old, gone):
        assert thumbs.get_or_cut(key, 160, settings.max_pixels)
    _age(thumbs.path(old, 160), 40)
    images.remove(gone)  # retention ran on another host: its thumbnail here must not outlive it
    # Model copies from a remote root: the champion's stays however old, an unused old one goes.
    registry = Registry(store)
    registry.add("lite0-champ", "lite0", "models/lite0-champ", {}, "ana")
    registry.promote_if_vacant("lite0-champ", actor="ana", reason="first")
    copies = {name: cache / "models" / f"{name}-{'0' * 16}" for name in ("lite0-champ", "lite0-old", "lite0-new")}
    for name, folder in copies.items():
        folder.mkdir(parents=True)
        (folder / "backbone.onnx").write_bytes(b"x" * 1000)
        if name != "lite0-new":
            _age(folder, 40)
    (cache / "mirror" / "images" / "ab").mkdir(parents=True)
    stale_copy = cache / "mirror" / "images" / "ab" / ("ab" * 32)
    stale_copy.write_bytes(b"y" * 10)
    _age(stale_copy, 40)
    crashed = cache / "thumbs" / "160" / ".partial-x"
    crashed.write_bytes(b"z")
    _age(crashed, 1)

    dry = prune_cache(settings, store, 30 * DAY, dry_run=True)
    assert (dry.thumbnails, dry.thumbnails_unkept, dry.model_copies, dry.mirror_files, dry.partials) == (2, 1, 1, 1, 1)
    assert thumbs.path(old, 160).is_file()  # a dry run removes nothing
    assert copies["lite0-old"].is_dir()

    r = prune_cache(settings, store, 30 * DAY)
    assert r.bytes_freed == dry.bytes_freed > 1000
    assert not thumbs.path(old, 160).exists()
    assert not thumbs.path(gone, 160).exists()
    assert thumbs.path(kept, 160).is_file()
    assert not copies["lite0-old"].exists()
    assert copies["lite0-champ"].is_dir()  # named by an alias
    assert copies["lite0-new"].is_dir()  # used lately
    assert sorted(r.kept_model_copies) == sorted(p.name for k, p in copies.items() if k != "lite0-old")
    assert not stale_copy.exists()
    assert not stale_copy.parent.exists()  # emptied folders go too
    assert not crashed.exists()
    assert thumbs.get_or_cut(old, 160, settings.max_pixels)  # cut again on its next view


def test_images_prune_takes_this_hosts_thumbnails_along(tmp_path: Path, store: Store) -> None:
    from lotlens.web.images import ThumbnailFolder

    from synth import car, jpeg

    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    storage = Storage.from_settings(settings)
    key = "c:" + "d" * 64
    ImageFolder(storage).put(key, jpeg(car("Blue", "white", 1)))
    _age(settings.data_dir / ImageFolder.relpath(key), 60)
    thumbs = ThumbnailFolder(storage, settings.resolved_cache_dir())
    assert thumbs.get_or_cut(key, 320, settings.max_pixels)
    assert prune(settings, store, 30 * DAY, 90 * DAY).removed == [key]
    assert not thumbs.path(key, 320).exists()


def test_cache_prune_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path))
    old = tmp_path / "cache" / "mirror" / "datasets" / "ds-1" / "manifest.csv"
    old.parent.mkdir(parents=True)
    old.write_text("path\n")
    _age(old, 10)
    res = runner.invoke(app, ["cache", "prune", "--older-than", "7", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    assert (json.loads(res.stdout)["mirror_files"], json.loads(res.stdout)["dry_run"]) == (1, True)
    assert old.is_file()
    res = runner.invoke(app, ["cache", "prune", "--older-than", "7"])
    assert res.exit_code == 0, res.output
    assert "1 training copies" in res.stdout
    assert not old.exists()
    assert runner.invoke(app, ["cache", "prune", "--older-than", "0"]).exit_code == 2
