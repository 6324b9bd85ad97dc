"""Model registry: register, promote, roll back; a running API takes up a new champion without
failing a request, and every answer names the model that made it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from lotlens.api import create_app
from lotlens.champion import Champion
from lotlens.cli import app
from lotlens.config import ApiKey, Settings
from lotlens.errors import Conflict, ModelError
from lotlens.store import Store
from lotlens.store.registry import Registry
from lotlens.train.registry import register
from lotlens.vision import Pipeline
from lotlens.vision.pipeline import ModelFolder, default_model_dir

from synth import variant

runner = CliRunner()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", allow_private_addresses=True, model_poll_seconds=0.05)


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store.from_url(settings.resolved_database_url())


def test_register_promote_rollback(tmp_path: Path, settings: Settings, store: Store) -> None:
    a = register(store, default_model_dir(), settings, "ana")
    b = register(store, variant(tmp_path, "lotlens-b", 0.4), settings, "ana", dataset="ds-2")
    assert a.path == f"models/{a.version}"  # relative to the storage root (here the data folder)
    assert (settings.data_dir / a.path / "FILES.sha256").is_file()
    assert a.metrics["type"]["accuracy"] > 0.9  # the validation metrics travel with the model
    assert register(store, default_model_dir(), settings, "ana").version == a.version  # idempotent
    reg = Registry(store)
    assert [m.version for m in reg.models()] == [a.version, b.version]
    assert reg.alias("champion") is None
    reg.promote(a.version, actor="ana", reason="first")
    p = reg.promote(b.version, actor="bo", reason="better on dealer X")
    assert (p.from_version, p.to_version, p.actor, p.reason) == (a.version, b.version, "bo", "better on dealer X")
    assert p.metrics == b.metrics
    back = reg.rollback(actor="ana", reason="fix rate doubled")
    assert (back.action, back.to_version) == ("rollback", a.version)
    assert reg.alias("champion") == a.version
    assert [h.action for h in reg.history("champion")] == ["promote", "promote", "rollback"]
    with pytest.raises(KeyError):
        reg.promote("nope", actor="x", reason=None)
    with pytest.raises(ValueError, match="alias"):
        reg.promote(a.version, actor="x", reason=None, alias="king")
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
        c.execute(text("delete from promotions"))


def test_rollback_needs_history(store: Store) -> None:
    with pytest.raises(Conflict, match="no earlier champion"):
        Registry(store).rollback(actor="x", reason=None)


def test_register_refuses_a_non_model(tmp_path: Path, settings: Settings, store: Store) -> None:
    with pytest.raises(ModelError):
        register(store, tmp_path, settings, "x")


def test_champion_follows_the_alias_and_survives_a_broken_model(
    tmp_path: Path, settings: Settings, store: Store, pipeline: Pipeline
) -> None:
    champ = Champion(settings, store, pipeline)
    assert champ().version == pipeline.version
    b = register(store, variant(tmp_path, "lotlens-b", 0.4), settings, "ana")
    Registry(store).promote(b.version, actor="x", reason=None)
    assert champ.refresh()
    assert champ().version == "lotlens-b"
    assert not champ.refresh()
    # A registered model whose files are gone: logged, and the current model keeps serving.
    c = register(store, variant(tmp_path, "lotlens-c", 0.3), settings, "ana")
    (settings.data_dir / c.path / "heads.npz").unlink()
    Registry(store).promote(c.version, actor="x", reason=None)
    assert not champ.refresh()
    assert champ().version == "lotlens-b"


def test_server_switches_models_without_failing_a_request(
    tmp_path: Path, settings: Settings, store: Store, pipeline: Pipeline, server: str
) -> None:
    admin = ApiKey(name="root", key="r" * 32, role="admin")
    settings = settings.model_copy(update={"api_keys": [admin]})
    b = register(store, variant(tmp_path, "lotlens-b", 0.45), settings, "ana")
    hdr = {"Authorization": f"Bearer {admin.key}"}
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()
    with TestClient(create_app(settings, store, pipeline)) as client:

        def scraper() -> None:
            n = 0
            while not stop.is_set():
                n += 1  # a new image each time, so every answer comes from a model, not the cache
                body = {"advertiser": "a", "images": [{"url": f"{server}/img/hs{n}.jpg?name=blue&salt={n}"}]}
                res = client.post("/v1/classify", json=body, headers=hdr)
                r = res.json()["results"][0] if res.status_code == 200 else {}
                seen.append((res.status_code, r.get("model_version")))

        worker = threading.Thread(target=scraper)
        worker.start()
        started = time.time() + 20
        while len(seen) < 2 and time.time() < started:  # the scraper is answered before the swap
            time.sleep(0.01)
        assert len(seen) >= 2
        res = client.post(f"/v1/models/{b.version}/promote", json={"reason": "sweep winner"}, headers=hdr)
        assert res.status_code == 201, res.text
        deadline = time.time() + 20
        while time.time() < deadline and not any(v == "lotlens-b" for _, v in seen[-3:]):
            time.sleep(0.05)
        stop.set()
        worker.join()
        listing = client.get("/v1/models", headers=hdr).json()
        assert listing["serving"] == "lotlens-b"
        assert listing["aliases"] == {"champion": "lotlens-b"}
        assert b.version in [m["version"] for m in listing["models"]]
        assert listing["next_cursor"] is None
        assert client.post("/v1/models/rollback", json={"reason": "test"}, headers=hdr).status_code == 409
    assert all(status == 200 for status, _ in seen), seen
    versions = [v for _, v in seen]
    assert versions[0] == pipeline.version
    assert versions[-1] == "lotlens-b"
    switch = versions.index("lotlens-b")
    assert set(versions[switch:]) == {"lotlens-b"}  # no flapping back once switched


def test_models_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path / "data"))
    res = runner.invoke(app, ["models", "register", str(default_model_dir()), "--actor", "ana"])
    assert res.exit_code == 0, res.output
    version = ModelFolder.read(default_model_dir()).version
    assert runner.invoke(app, ["models", "promote", version, "--reason", "first"]).exit_code == 0
    listing = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert version in listing.stdout
    assert "champion" in listing.stdout
    shown = json.loads(runner.invoke(app, ["models", "show", version]).stdout)
    assert shown["promotions"][0]["reason"] == "first"
    assert runner.invoke(app, ["models", "promote", "nope", "--reason", "x"]).exit_code == 3  # not found
    assert (
        runner.invoke(app, ["models", "rollback", "--reason", "x"]).exit_code == 5
    )  # conflict: nothing to roll back to
    assert runner.invoke(app, ["models", "show", "nope"]).exit_code == 2


def test_champion_loads_the_model_for_serving(settings: Settings, store: Store) -> None:
    """Two model calls at once share the cores: each gets its share of threads, none spins, the
    sessions share one CPU arena with no per-shape memory pattern; the glibc heap is kept from growing."""
    import os

    from lotlens.champion import serving_threads
    from lotlens.memory import limit_heap_growth
    from lotlens.vision.backbone import shared_cpu_arena

    pipeline = Champion(settings, store)()
    for session in (pipeline.featurizer.backbone._session, pipeline.featurizer.detector._session):
        opts = session.get_session_options()  # type: ignore[attr-defined]
        assert opts.intra_op_num_threads == serving_threads(settings)
        assert opts.enable_mem_pattern is False
        assert opts.get_session_config_entry("session.use_env_allocators") == "1"
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert shared_cpu_arena() is True  # registered once for the process: a second ask is a no-op
    assert serving_threads(settings) == max(1, (os.cpu_count() or 1) // 2)
    assert serving_threads(settings.model_copy(update={"threads": 3})) == 3
    assert limit_heap_growth() is (os.uname().sysname == "Linux")  # glibc here; a no-op elsewhere
    # One caller's pipeline (the CLI, the naive benchmark loop) keeps the defaults.
    single = Pipeline.load().featurizer.backbone._session.get_session_options()  # type: ignore[attr-defined]
    assert single.enable_cpu_mem_arena is True
    assert single.enable_mem_pattern is True
    with pytest.raises(RuntimeError):  # not set: its own arena
        single.get_session_config_entry("session.use_env_allocators")
    assert single.get_session_config_entry("session.intra_op.allow_spinning") == "1"
