"""Datasets from manual fixes: filters, conflicts held for review, advertiser split, immutability."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from lotlens.cli import app
from lotlens.config import Settings
from lotlens.service import Item, Service
from lotlens.store import Store
from lotlens.store.images import ImageFolder
from lotlens.store.review import ReviewQueue
from lotlens.train.dataset import create, import_csv, read_rows
from lotlens.train.manifest import read_manifest
from lotlens.vision import Pipeline

from synth import car, jpeg

runner = CliRunner()


@pytest.fixture
def world(tmp_path: Path, pipeline: Pipeline, server: str) -> tuple[Settings, Store, dict[str, str]]:
    """Two advertisers classify; fixes include a planted conflict and a planted tiny image."""
    settings = Settings(data_dir=tmp_path / "data", allow_private_addresses=True, dataset_test_size=0.5)
    store = Store.from_url(settings.resolved_database_url())
    service = Service(settings, store, lambda: pipeline)
    a = [f"{server}/img/ds-{n}.jpg?name={n}" for n in ("car", "blue", "yellow", "tiny")]
    b = [f"{server}/img/ds-b-car.jpg?name=car"]
    keys = {}
    for adv, urls in (("a", a), ("b", b)):
        for u, r in zip(urls, asyncio.run(service.classify(adv, [Item(u) for u in urls])), strict=True):
            assert r.status == "ok", r
            keys[f"{adv}:{u.rsplit('=', 1)[1]}"] = r.image_key
    fix = store.add_fix
    fix(keys["a:car"], "type", "Stock", actor="dealer-a", role="advertiser:a", scope="advertiser", advertiser="a")
    fix(keys["b:car"], "type", "Dealer", actor="dealer-b", role="advertiser:b", scope="advertiser", advertiser="b")
    fix(keys["a:blue"], "color", "Green", actor="dealer-a", role="advertiser:a", scope="advertiser", advertiser="a")
    fix(keys["a:tiny"], "type", "Dealer", actor="dealer-a", role="advertiser:a", scope="advertiser", advertiser="a")
    fix(keys["a:yellow"], "type", "Placeholder", actor="ana", role="staff", scope="global", advertiser=None)
    return settings, store, keys


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.iterdir()))).hexdigest()


def test_create_filters_holds_conflicts_and_splits_by_advertiser(world: tuple[Settings, Store, dict[str, str]]) -> None:
    settings, store, keys = world
    report = create(settings, store)
    rows = {r.image_key: r for r in read_rows(settings, report.version)}
    assert keys["a:car"] not in rows  # two dealers disagree: held for review
    assert report.dropped[keys["a:tiny"]].startswith("too_small")
    assert (rows[keys["a:blue"]].color, rows[keys["a:blue"]].group) == ("Green", "a")
    assert rows[keys["a:blue"]].type is None  # only the color was fixed: the type stays unknown
    assert (rows[keys["a:yellow"]].type, rows[keys["a:yellow"]].color) == ("Placeholder", None)
    for r in rows.values():
        assert Path(settings.data_dir / r.path).is_file()
        assert r.split in ("train", "test")
    by_group: dict[str, set[str]] = {}
    for r in rows.values():
        by_group.setdefault(r.group, set()).add(r.split)
    assert all(len(sides) == 1 for sides in by_group.values())  # no advertiser on both sides
    [conflict] = [i for i in ReviewQueue(store).items() if i.kind == "conflict"]
    assert (conflict.content_key, conflict.field) == (keys["a:car"], "type")
    assert {c["value"] for c in conflict.candidates} == {"Stock", "Dealer"}
    folder = settings.data_dir / "datasets" / report.version
    assert {p.name for p in folder.iterdir()} == {
        "manifest.csv",
        "train.csv",
        "test.csv",
        "stats.json",
        "meta.json",
        "FILES.sha256",
    }
    stats = json.loads((folder / "stats.json").read_text())
    assert sum(stats["vehicle"].values()) == len(rows)
    assert set(stats) >= {"type", "color", "split", "advertiser", "vehicle", "warnings"}
    # The manifest is the format train and evaluate read.
    assert len(read_manifest(folder / "manifest.csv")) == len(rows)


def test_same_inputs_same_version_never_rewritten(world: tuple[Settings, Store, dict[str, str]]) -> None:
    settings, store, _ = world
    first = create(settings, store)
    folder = settings.data_dir / "datasets" / first.version
    before = _digest(folder)
    again = create(settings, store)
    assert (again.version, again.existed) == (first.version, True)
    assert _digest(folder) == before
    assert len(ReviewQueue(store).items()) == len(ReviewQueue(store).items(first.version))  # queued once


def test_review_decision_goes_into_the_next_version(world: tuple[Settings, Store, dict[str, str]]) -> None:
    settings, store, keys = world
    first = create(settings, store)
    queue = ReviewQueue(store)
    [conflict] = [i for i in queue.items() if i.kind == "conflict"]
    with pytest.raises(ValueError, match="several labels"):
        queue.decide(conflict.id, "accept", "ana")
    with pytest.raises(ValueError, match="type must be"):
        queue.decide(conflict.id, "relabel", "ana", "Car")
    decided = queue.decide(conflict.id, "relabel", "ana", "Stock")
    assert (decided.status, decided.decided_value, decided.decided_by) == ("relabelled", "Stock", "ana")
    assert queue.items() == [i for i in queue.items() if i.id != conflict.id]
    # A new fix after the first version, so the second one has something to extend with.
    store.add_fix(
        keys["a:blue"], "type", "Dealer", actor="dealer-a", role="advertiser:a", scope="advertiser", advertiser="a"
    )
    second = create(settings, store, since=None)
    assert second.version != first.version
    rows = {r.image_key: r for r in read_rows(settings, second.version)}
    assert rows[keys["a:car"]].type == "Stock"
    assert (rows[keys["a:blue"]].type, rows[keys["a:blue"]].color) == ("Dealer", "Green")
    assert (settings.data_dir / "datasets" / first.version).is_dir()  # the parent is untouched


def test_images_missing_locally_are_fetched_again_and_checked(world: tuple[Settings, Store, dict[str, str]]) -> None:
    settings, store, keys = world
    path = settings.data_dir / ImageFolder.relpath(keys["a:blue"])
    path.unlink()
    report = create(settings, store)
    assert keys["a:blue"] in {r.image_key for r in read_rows(settings, report.version)}
    assert path.is_file()


def test_import_a_hand_made_set(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    (tmp_path / "img").mkdir()
    red = jpeg(car("Red", "white", 1))
    (tmp_path / "img/a.jpg").write_bytes(red)
    (tmp_path / "img/a-copy.jpg").write_bytes(red)
    (tmp_path / "img/b.jpg").write_bytes(jpeg(car("Blue", "scene", 2)))
    Image.new("RGB", (20, 20)).save(tmp_path / "img/small.png")
    with (tmp_path / "set.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "type", "color", "group", "split"])
        w.writerows(
            [
                ["img/a.jpg", "Stock", "Red", "x", "train"],
                ["img/a-copy.jpg", "Stock", "Red", "x", ""],
                ["img/b.jpg", "Dealer", "Blue", "y", "test"],
                ["img/small.png", "Placeholder", "", "y", ""],
                ["img/gone.jpg", "Dealer", "", "y", ""],
            ]
        )
    report = import_csv(settings, tmp_path / "set.csv")
    assert report.rows == 2
    assert report.dropped["img/a-copy.jpg"].startswith("duplicate")
    assert report.dropped["img/small.png"].startswith("too_small")
    assert report.dropped["img/gone.jpg"] == "unavailable"
    assert sorted((r.group, r.split) for r in read_rows(settings, report.version)) == [("x", "train"), ("y", "test")]
    assert import_csv(settings, tmp_path / "set.csv").existed


def test_dataset_cli(world: tuple[Settings, Store, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, store, _ = world
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LOTLENS_ALLOW_PRIVATE_ADDRESSES", "true")
    res = runner.invoke(app, ["dataset", "create"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "too_small" in res.stdout
    assert "review queue" in res.stdout
    listing = runner.invoke(app, ["dataset", "review"], env={"COLUMNS": "200"})
    assert "conflict" in listing.stdout
    item = ReviewQueue(store).items()[0]
    res = runner.invoke(app, ["dataset", "review", "--reject", str(item.id), "--actor", "ana"])
    assert res.exit_code == 0, res.output
    assert "rejected" in res.stdout
    assert runner.invoke(app, ["dataset", "review", "--reject", "9999"]).exit_code == 3  # not found


def test_import_without_splits_uses_the_group_aware_split(tmp_path: Path) -> None:
    from synth import make_set

    settings = Settings(data_dir=tmp_path / "data", dataset_test_size=0.3)
    report = import_csv(settings, make_set(tmp_path / "set", "s", seed=3, per_class=9))
    rows = read_rows(settings, report.version)
    sides = {r.split for r in rows}
    assert sides == {"train", "test"}
    assert 0.1 < sum(r.split == "test" for r in rows) / len(rows) < 0.5


def test_sweep_score_ignores_what_was_not_measured() -> None:
    from lotlens.train.sweep import DEFAULT_SCORE, summarise

    evaluation = {
        "type": {"accuracy": 1.0, "recall": {"Placeholder": 1.0}},
        "color": {"accuracy": float("nan"), "top2": float("nan"), "recall": {}},
        "groups": [{"group": "g", "type_accuracy": 0.5}],
    }
    row = summarise("x", evaluation, DEFAULT_SCORE)
    assert row["score"] == 1.0 + 2.0 + 0.25
    assert row["worst_group_name"] == "g"
