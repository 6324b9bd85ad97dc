"""`lotlens split`, `train` and `evaluate` end to end on a tiny synthetic manifest (fast)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner, Result

from lotlens.cli import app
from lotlens.errors import ManifestError
from lotlens.labels import COLORS, TYPES
from lotlens.train.fit import TrainConfig
from lotlens.train.manifest import read_manifest
from lotlens.train.sweep import _worker_setup, blas_share, load_configs
from lotlens.vision.heads import MLPHead
from lotlens.vision.pipeline import ModelFolder, Pipeline, default_model_dir

from synth import car, make_set

runner = CliRunner()


def train_tiny(manifest: Path, out: Path) -> Result:
    """`lotlens train` with the settings every test here uses: few generated images, seed 3."""
    args = ["--generated-placeholders", "12", "--seed", "3", "--name", "tiny"]
    return runner.invoke(app, ["train", "--manifest", str(manifest), "--out", str(out), *args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("set")
    train_csv = make_set(root, "train", seed=1, per_class=12)
    test_csv = make_set(root, "test", seed=2, per_class=6)
    model = root / "model"
    res = train_tiny(train_csv, model)
    assert res.exit_code == 0, res.output
    return model, test_csv, root


def test_train_writes_a_complete_model_folder(trained: tuple[Path, Path, Path]) -> None:
    model, _, root = trained
    assert {p.name for p in model.iterdir()} >= {"model.json", "heads.npz", "backbone.onnx"}
    meta = json.loads((model / "model.json").read_text())
    assert meta["labels"] == {"type": list(TYPES), "color": list(COLORS)}
    assert meta["version"].startswith("tiny-")
    assert meta["seed"] == 3
    assert meta["config"]["generated_placeholders"] == 12
    assert len(meta["manifest"]["sha256"]) == 64
    assert meta["preprocessing"]["backbone"]["normalise"] == "(x - 127) / 128"
    assert [s["path"] for s in meta["data"]["skipped"]] == ["img/train-broken.jpg"]
    assert meta["data"]["generated"]["recolor"] > 0  # Purple, Burgundy, Pink, Orange were absent
    assert set(meta["metrics"]) >= {"type", "color", "groups"}
    assert 0 < meta["decision"]["placeholder_threshold"] <= 0.5
    assert meta["config"]["fills_frame"] == 0.85
    assert 0.5 <= meta["decision"]["frame_threshold"] <= 1.01
    assert meta["format"] == 2
    assert meta["config"]["type_head"] == "network"
    type_head = ModelFolder.read(model).type_head
    assert isinstance(type_head, MLPHead)
    assert type_head.w1.shape[:2] == (meta["config"]["type_members"], meta["config"]["type_hidden"])


def test_sweep_workers_share_the_cores_for_blas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each candidate's process runs numpy's BLAS on its share of the cores, at lower priority."""
    from threadpoolctl import threadpool_info

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [blas_share(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_worker_setup, initargs=(1,)) as pool:
        pools = pool.submit(threadpool_info).result()
        niceness = pool.submit(os.nice, 0).result()
    assert {p["num_threads"] for p in pools if p["user_api"] == "blas"} == {1}
    assert niceness >= 10


def test_sweep_configs_name_their_bad_setting(tmp_path: Path) -> None:
    """configs/sweep.yaml loads; a candidate with an unknown setting or head is one clear error."""
    candidates, score = load_configs(Path(__file__).parents[1] / "configs" / "sweep.yaml")
    assert 4 <= len(candidates) <= 8
    assert {"linear-type", "base"} <= {c.name for c in candidates}
    assert score["placeholder_recall"] == 2.0
    four = [{"name": f"c{i}"} for i in range(3)]
    for bad, message in (({"type_head": "forest"}, "c3: type_head: 'forest'"), ({"type_cc": 1}, "unknown settings")):
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump({"candidates": [*four, {"name": "c3", **bad}]}))
        with pytest.raises(ManifestError, match=message):
            load_configs(path)
    with pytest.raises(ValueError, match="type_head"):
        TrainConfig(type_head="forest")


def test_frame_threshold_is_the_lowest_that_keeps_its_precision() -> None:
    from lotlens.train.fit import choose_frame_threshold

    rng = np.random.default_rng(0)
    p = rng.random(2000).astype(np.float32)
    fills = (rng.random(2000) < p).astype(int)  # calibrated: a photo at p fills the frame with probability p
    th = choose_frame_threshold(list(fills), p, 0.9)
    passed = p >= th
    assert fills[passed].mean() >= 0.9
    lower = p >= th - 0.01
    assert fills[lower].mean() < 0.9  # one step lower would miss the precision
    assert choose_frame_threshold([0] * 50, np.ones(50, np.float32), 0.9) == 1.01  # never reached: never skip


def test_training_is_deterministic(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, _, root = trained
    res = train_tiny(root / "train.csv", tmp_path / "again")
    assert res.exit_code == 0, res.output
    assert ModelFolder.read(tmp_path / "again").version == ModelFolder.read(model).version


def test_evaluate_json_schema_and_quality(trained: tuple[Path, Path, Path]) -> None:
    model, test_csv, _ = trained
    res = runner.invoke(app, ["evaluate", "--model", str(model), "--manifest", str(test_csv), "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["model"].startswith("tiny-")
    assert r["type"]["n"] == 18  # 6 Stock + 6 Dealer + 6 Placeholder; the broken file is skipped
    assert r["skipped"][0]["path"] == "img/test-broken.jpg"
    assert set(r["type"]["recall"]) == set(TYPES)
    assert isinstance(r["type"]["precision"], dict)
    assert r["color"]["n"] == 12
    # Every photo given a color says where it was read; the 12 labelled ones are among them.
    assert set(r["color_located"]) <= {"frame", "detector", "white_background", "none"}
    assert sum(r["color_located"].values()) >= 12
    assert 0 <= r["color"]["accuracy"] <= r["color"]["top2"] <= 1
    assert {g["group"] for g in r["groups"]} == {"adv0", "adv1", "adv2"}
    assert all({"group", "n", "type_accuracy"} <= set(g) for g in r["groups"])
    # Synthetic classes are easy: white field vs. scene vs. flat graphic.
    assert r["type"]["accuracy"] >= 0.8
    assert r["type"]["recall"]["Placeholder"] == 1.0
    assert r["color"]["accuracy"] >= 0.5


def test_evaluate_prints_tables_and_writes_html_report(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, test_csv, _ = trained
    res = runner.invoke(
        app, ["evaluate", "--model", str(model), "--manifest", str(test_csv), "--report", str(tmp_path / "rep")]
    )
    assert res.exit_code == 0, res.output
    assert "placeholder recall" in res.stdout
    assert "per group" in res.stdout
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "confusion_type.png" in page
    assert "tiny-" in page
    assert "calibration error" in page
    for png in ("confusion_type.png", "confusion_color.png", "groups.png", "reliability.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_images_root_overrides_the_manifest_folder(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, test_csv, root = trained
    moved = tmp_path / "elsewhere.csv"
    moved.write_text(test_csv.read_text())
    res = runner.invoke(
        app, ["evaluate", "--model", str(model), "--manifest", str(moved), "--json", "--images-root", str(root)]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["type"]["n"] == 18


def test_split_command_keeps_small_groups_whole(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, _, root = trained
    res = runner.invoke(app, ["split", "--manifest", str(root / "train.csv"), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    train_rows, test_rows = read_manifest(tmp_path / "train.csv"), read_manifest(tmp_path / "test.csv")
    assert len(train_rows) + len(test_rows) == len(read_manifest(root / "train.csv"))
    assert {r.path for r in train_rows}.isdisjoint({r.path for r in test_rows})


def test_bad_manifest_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx.jpg,Dealer\n")
    res = runner.invoke(app, ["train", "--manifest", str(bad), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2
    assert "missing column" in res.output
    assert not (tmp_path / "m").exists()


def test_trained_model_serves_through_pipeline(trained: tuple[Path, Path, Path]) -> None:
    model, _, _ = trained
    pipe = Pipeline.load(model)
    pred = pipe.classify([np.asarray(car("Red", "white", 99))])[0]
    assert pred.model_version == pipe.version
    assert pred.type in TYPES


def test_evaluate_reports_color_calibration(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, test_csv, _ = trained
    res = runner.invoke(app, ["evaluate", "--model", str(model), "--manifest", str(test_csv), "--json"])
    r = json.loads(res.stdout)
    cal = r["color_calibration"]
    assert cal["n"] == r["color"]["n"] - r["color"]["unanswered"]
    assert 0 <= cal["ece"] <= 1
    assert sum(b["n"] for b in cal["bins"]) == cal["n"]
    meta = json.loads((model / "model.json").read_text())
    assert meta["decision"]["color_temperature"] > 0
    assert meta["features"]["color_regions"] == list(TrainConfig().color_regions) == ["band_wb", "center_wb"]
    assert meta["metrics"]["color_calibration"]["temperature"] == meta["decision"]["color_temperature"]


def test_evaluate_compare_two_models_side_by_side(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, test_csv, root = trained
    args = ["evaluate", "--model", str(model), "--compare", str(default_model_dir()), "--manifest", str(test_csv)]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["a"]["model"].startswith("tiny-")
    assert r["b"]["model"] == ModelFolder.read(default_model_dir()).version
    assert r["a"]["type"]["n"] == r["b"]["type"]["n"] == 18
    assert {c["label"] for c in r["classes"] if c["task"] == "type"} == set(TYPES)
    assert {g["group"] for g in r["groups"]} == {"adv0", "adv1", "adv2"}
    # Every listed difference really differs, and the winner is the one that matches the label.
    for d in r["differ"]:
        assert d["a"] != d["b"]
        assert d["winner"] == ("a" if d["a"] == d["expected"] else "b" if d["b"] == d["expected"] else "neither")
    # A tiny synthetic model and the bundled one do not answer alike on every image.
    assert r["differ"]
    res = runner.invoke(app, [*args, "--report", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert "answers differ" in res.stdout
    page = (tmp_path / "cmp" / "index.html").read_text()
    assert "reliability.png" in page
    thumbs = sorted((tmp_path / "cmp" / "thumbs").iterdir())
    assert len(thumbs) == len({d["path"] for d in r["differ"] if d["path"] != "img/test-broken.jpg"})
    assert all(t.read_bytes()[:2] == b"\xff\xd8" for t in thumbs)


def test_train_writes_its_card_and_training_images(trained: tuple[Path, Path, Path]) -> None:
    model, _, root = trained
    meta = json.loads((model / "model.json").read_text())
    seen = json.loads((model / "training_images.json").read_text())
    assert seen["manifest_sha256"] == meta["manifest"]["sha256"]
    rows = read_manifest(root / "train.csv")
    assert seen["sha256"] == sorted({hashlib.sha256((root / r.path).read_bytes()).hexdigest() for r in rows})
    card = json.loads((model / "card.json").read_text())
    assert card["version"] == meta["version"]
    assert card["data"]["type"] == meta["data"]["type"]
    per_type = {c["label"]: c for c in card["metrics"]["per_class"]["type"]}
    assert per_type["Placeholder"]["recall"] == meta["metrics"]["type"]["recall"]["Placeholder"]
    assert per_type["Stock"]["n"] == meta["metrics"]["type"]["support"]["Stock"]
    assert {g["group"] for g in card["metrics"]["per_source"]["type"]} == {
        g["group"] for g in meta["metrics"]["groups"]
    }
    assert sum(g["n"] for g in card["metrics"]["per_source"]["color"]) == meta["metrics"]["color"]["n"]
    assert card["intended_use"]
    # Each color has a few dozen rows here: every one is named as a known limit, with its count.
    for color, n in meta["data"]["color"].items():
        assert f"color {color}: only {n} training rows (real and recolored)." in card["known_limits"]
    page = (model / "model_card.md").read_text()
    assert page.startswith(f"# Model card: {meta['version']}\n")
    shown = runner.invoke(app, ["models", "card", str(model)])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == page + "\n"
    as_json = runner.invoke(app, ["models", "card", str(model), "--json"])
    assert json.loads(as_json.stdout) == card


def test_evaluate_warns_about_rows_the_model_was_trained_on(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, test_csv, root = trained
    clean = runner.invoke(app, ["evaluate", "--model", str(model), "--manifest", str(test_csv), "--json"])
    c = json.loads(clean.stdout)
    assert c["training_overlap"] == {"shared": 0, "scored": 18}
    assert c["unseen"] == c["overall"]
    assert "warning" not in clean.stderr
    # The test rows plus five training images under new names: same bytes, so still seen in training.
    leaked = [r for r in read_manifest(root / "train.csv") if "broken" not in r.path][:5]
    lines = test_csv.read_text().splitlines()
    for i, r in enumerate(leaked):
        copy = f"img/{tmp_path.name}-leak-{i}{Path(r.path).suffix}"
        (root / copy).write_bytes((root / r.path).read_bytes())
        lines.append(f"{copy},{r.type},{r.color or ''},{r.group},")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("\n".join(lines) + "\n")
    res = runner.invoke(
        app, ["evaluate", "--model", str(model), "--manifest", str(mixed), "--images-root", str(root), "--json"]
    )
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["training_overlap"] == {"shared": 5, "scored": 23}
    assert r["overall"]["n_type"] == 23
    assert r["unseen"] == c["overall"]  # the unseen rows are exactly the clean test set
    assert "warning: 5 of 23 scored rows share their image (sha256) with the model's training manifest" in res.stderr
    table = runner.invoke(
        app, ["evaluate", "--model", str(model), "--manifest", str(mixed), "--images-root", str(root)]
    )
    assert "never saw in training" in table.stdout
    # --compare says it for each side: the tiny model saw 5 of these rows, the bundled one none.
    both = runner.invoke(
        app,
        ["evaluate", "--model", str(model), "--compare", str(default_model_dir()), "--manifest", str(mixed)]
        + ["--images-root", str(root), "--json"],
    )
    assert both.exit_code == 0, both.output
    b = json.loads(both.stdout)
    assert b["a"]["training_overlap"] == {"shared": 5, "scored": 23}
    assert b["b"]["training_overlap"] == {"shared": 0, "scored": 23}
    assert f"model a ({b['a']['model']}): 5 of 23 scored rows share their image" in both.stderr
    assert "model b" not in both.stderr


def test_evaluate_says_when_the_overlap_is_unknown(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, test_csv, _ = trained
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    seen = json.loads((copy / "training_images.json").read_text())
    seen["manifest_sha256"] = "0" * 64  # the hashes of another manifest must not vouch for this one
    (copy / "training_images.json").write_text(json.dumps(seen))
    for state in ("stale", "missing"):
        res = runner.invoke(app, ["evaluate", "--model", str(copy), "--manifest", str(test_csv), "--json"])
        assert res.exit_code == 0, res.output
        r = json.loads(res.stdout)
        assert (r["training_overlap"], r["unseen"]) == (None, None), state
        assert "whether these rows were in its training data is unknown" in res.stderr
        (copy / "training_images.json").unlink(missing_ok=True)
