"""The whole retraining loop against a running server: classify, fix (with a planted conflict and
a planted tiny image), create a dataset, sweep 4 candidates, compare, promote while a client keeps
classifying (no failed request, answers switch model version), roll back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from lotlens.api import create_app
from lotlens.cli import app
from lotlens.config import ApiKey, Settings
from lotlens.store import Store
from lotlens.store.review import ReviewQueue
from lotlens.train.dataset import read_rows

from httpserver import serve_app
from synth import make_set

pytestmark = pytest.mark.slow
runner = CliRunner()
ADMIN = ApiKey(name="root", key="r" * 32, role="admin")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    data = tmp_path / "data"
    for k, v in {
        "LOTLENS_DATA_DIR": str(data),
        "LOTLENS_ALLOW_PRIVATE_ADDRESSES": "true",
        "LOTLENS_MODEL_POLL_SECONDS": "0.2",
        "LOTLENS_DATASET_TEST_SIZE": "0.5",
        "LOTLENS_API_KEYS": json.dumps([ADMIN.model_dump()]),
    }.items():
        monkeypatch.setenv(k, v)
    return Settings()


@pytest.fixture
def live(env: Settings) -> Iterator[str]:
    """`lotlens serve` for real: uvicorn on a free port, in a thread."""
    yield from serve_app(create_app(env))


@pytest.fixture
def client(live: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live, headers={"Authorization": f"Bearer {ADMIN.key}"}, timeout=60) as c:
        yield c


def test_the_whole_loop(env: Settings, live: str, client: httpx.Client, server: str, tmp_path: Path) -> None:
    hdr = {"Authorization": f"Bearer {ADMIN.key}"}
    # The first dataset: a hand-made set, its advertisers split explicitly.
    base = make_set(
        tmp_path / "set", "base", seed=1, per_class=9, splits={"adv0": "train", "adv1": "train", "adv2": "test"}
    )
    res = runner.invoke(app, ["dataset", "import", str(base)])
    assert res.exit_code == 0, res.output
    first = res.stdout.split(":")[0].strip()

    # Classify through the running server, then fix a batch: a planted conflict and a tiny image.
    urls = {n: f"{server}/img/loop-{n}.jpg?name={n}" for n in ("car", "blue", "yellow", "tiny")}
    body = {"advertiser": "dealer-a", "images": [{"url": u} for u in urls.values()]}
    keys = {
        n: r["image_key"] for n, r in zip(urls, client.post("/v1/classify", json=body).json()["results"], strict=True)
    }
    other = {"advertiser": "dealer-b", "images": [{"url": f"{server}/img/loop-b.jpg?name=car"}]}
    assert client.post("/v1/classify", json=other).json()["results"][0]["image_key"] == keys["car"]
    for key, adv, fld, value in (
        (keys["car"], "dealer-a", "type", "Stock"),
        (keys["car"], "dealer-b", "type", "Dealer"),
        (keys["blue"], "dealer-a", "color", "Blue"),
        (keys["tiny"], "dealer-a", "type", "Dealer"),
        (keys["yellow"], "dealer-a", "type", "Stock"),
    ):
        assert client.post("/v1/fixes", json={"image_key": key, "advertiser": adv, fld: value}).status_code == 201

    res = runner.invoke(app, ["dataset", "create", "--from", first], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    version = res.stdout.split(":")[0].strip()
    rows = {r.image_key for r in read_rows(env, version)}
    assert keys["car"] not in rows
    assert keys["tiny"] not in rows
    assert {keys["blue"], keys["yellow"]} <= rows
    assert "too_small" in res.stdout
    store = Store.from_url(env.resolved_database_url())
    assert [(i.content_key, i.kind) for i in ReviewQueue(store).items(version) if i.kind == "conflict"] == [
        (keys["car"], "conflict")
    ]

    # Sweep 4 candidates in separate processes, compare, register the best.
    configs = tmp_path / "sweep.yaml"
    configs.write_text(
        yaml.safe_dump(
            {
                "candidates": [
                    {"name": "a", "generated_placeholders": 12},
                    {"name": "b", "generated_placeholders": 12, "type_c": 0.1},
                    {"name": "c", "generated_placeholders": 12, "class_weight": None},
                    {"name": "d", "generated_placeholders": 12, "recolor": False},
                ]
            }
        )
    )
    res = runner.invoke(
        app,
        [
            "train",
            "sweep",
            "--dataset",
            version,
            "--configs",
            str(configs),
            "--test",
            str(base),
            "--test-images-root",
            str(base.parent),
        ],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    comparison = json.loads(next((env.data_dir / "sweeps").glob("*/comparison.json")).read_text())
    assert len(comparison["rows"]) == 4
    assert [r["score"] for r in comparison["rows"]] == sorted((r["score"] for r in comparison["rows"]), reverse=True)
    assert all(r["ad_hoc"][str(base)]["unreadable"] == 1 for r in comparison["rows"])  # its planted broken file
    assert all(r["ad_hoc"][str(base)]["type_accuracy"] > 0 for r in comparison["rows"])
    assert (next((env.data_dir / "sweeps").glob("*/report.html"))).read_text().count("<tr") >= 5
    best = comparison["rows"][0]
    assert runner.invoke(app, ["models", "register", best["path"], "--dataset", version]).exit_code == 0

    # Promote while a client keeps classifying new images; then roll back.
    served_before = client.get("/v1/models").json()["serving"]
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def scraper() -> None:
        n = 0
        with httpx.Client(base_url=live, headers=hdr, timeout=60) as c:
            while not stop.is_set():
                n += 1
                res = c.post(
                    "/v1/classify",
                    json={
                        "advertiser": "dealer-a",
                        "images": [{"url": f"{server}/img/loop-s{n}.jpg?name=blue&salt=loop{n}"}],
                    },
                )
                seen.append((res.status_code, res.json()["results"][0]["model_version"] if res.is_success else None))

    def wait_for(version: str) -> None:
        deadline = time.time() + 30
        while time.time() < deadline and not any(v == version for _, v in seen[-2:]):
            time.sleep(0.05)

    worker = threading.Thread(target=scraper)
    worker.start()
    try:
        time.sleep(0.5)
        assert runner.invoke(app, ["models", "promote", best["version"], "--reason", "sweep winner"]).exit_code == 0
        wait_for(best["version"])
        # The bundled model was registered as the first champion when the server started, so the
        # first promotion can be rolled back at once.
        res = client.post("/v1/models/rollback", json={"reason": "watching it: fix rate up"})
        assert res.status_code == 201, res.text
        wait_for(served_before)
        assert runner.invoke(app, ["models", "promote", best["version"], "--reason", "fixed"]).exit_code == 0
        wait_for(best["version"])
    finally:
        stop.set()
        worker.join()
    assert all(status == 200 for status, _ in seen), seen
    versions = [v for _, v in seen]
    assert versions[0] == served_before
    assert best["version"] in versions
    assert versions[-1] == best["version"]
    assert [p["action"] for p in client.get("/v1/promotions").json()["promotions"]] == [
        "promote",
        "promote",
        "rollback",
        "promote",
    ]
