"""`lotlens reclassify`: the champion recomputes cached answers, fixed images stay, reruns resume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lotlens.cli import app
from lotlens.config import Settings
from lotlens.service import Item, Service
from lotlens.store import Store
from lotlens.store.images import ImageFolder
from lotlens.store.registry import Registry
from lotlens.train.reclassify import reclassify
from lotlens.train.registry import register
from lotlens.vision import Pipeline

from synth import variant

runner = CliRunner()


def test_reclassify_with_the_champion(
    tmp_path: Path, pipeline: Pipeline, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "data", allow_private_addresses=True)
    store = Store.from_url(settings.resolved_database_url())
    urls = [f"{server}/img/rc-{n}.jpg?name={n}" for n in ("car", "blue", "yellow")]
    results = asyncio.run(Service(settings, store, lambda: pipeline).classify("a", [Item(u) for u in urls]))
    car, blue, yellow = (r.image_key for r in results)
    store.add_fix(car, "type", "Stock", actor="a1", role="advertiser:a", scope="advertiser", advertiser="a")
    (settings.data_dir / ImageFolder.relpath(yellow)).unlink()  # gone locally: fetched again from its URL
    b = register(store, variant(tmp_path, "lotlens-rc", 0.45), settings, "ana")
    Registry(store).promote(b.version, actor="ana", reason="test")
    new = Pipeline.load(settings.data_dir / b.path)

    report = reclassify(settings, store, new, "a")
    assert (report.images, report.reclassified, report.manual, report.already_done) == (3, 2, 1, 0)
    answers = store.answers([car, blue, yellow], "a")
    assert answers[blue].model_version == answers[yellow].model_version == "lotlens-rc"
    assert (answers[car].type, answers[car].source) == ("Stock", "manual")
    assert store.predicted_by([car], "lotlens-rc") == set()  # the fixed image was not touched
    again = reclassify(settings, store, new, "a")
    assert (again.reclassified, again.already_done) == (0, 2)

    monkeypatch.setenv("LOTLENS_DATA_DIR", str(settings.data_dir))
    res = runner.invoke(app, ["reclassify", "--all"])
    assert res.exit_code == 0, res.output
    assert "0 reclassified, 2 already done, 1 manually fixed" in res.stdout
    assert runner.invoke(app, ["reclassify"]).exit_code == 2
