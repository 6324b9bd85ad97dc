"""What the CLI prints for a program: --json as JSON Lines written as results come, tables as wide
as their content when stdout is not a terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from lotlens.cli import app
from lotlens.vision import Pipeline
from lotlens.vision.pipeline import ModelFolder, default_model_dir

from synth import car, jpeg, make_set, variant

runner = CliRunner()


def lines(res: Result) -> list[dict[str, Any]]:
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.stdout.splitlines()]


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    deep = tmp_path / "a-rather-long-folder-name-as-dealers-use" / "and-another-level-below-it"
    deep.mkdir(parents=True)
    paths = []
    for i, color in enumerate(("Blue", "Red", "White")):
        p = deep / f"vehicle-photo-{i}-{color.lower()}.jpg"
        p.write_bytes(jpeg(car(color, "scene", i)))
        paths.append(str(p))
    return paths


def test_classify_json_lines_are_written_batch_by_batch(images: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_BATCH_SIZE", "1")
    written_before_each_batch: list[int] = []
    classify = Pipeline.classify

    def spying(self: Pipeline, batch: list[Any]) -> Any:
        sys.stdout.flush()
        written_before_each_batch.append(sys.stdout.buffer.getvalue().count(b"\n"))  # type: ignore[attr-defined]
        return classify(self, batch)

    monkeypatch.setattr(Pipeline, "classify", spying)
    out = lines(runner.invoke(app, ["classify", "--json", *images]))
    assert [r["source"] for r in out] == images
    assert written_before_each_batch == [0, 1, 2]  # each answer was out before the next batch began


def test_tables_are_as_wide_as_their_content_off_a_terminal(images: list[str]) -> None:
    res = runner.invoke(app, ["classify", *images])
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.splitlines() if "vehicle-photo-" in line]
    assert len(rows) == 3  # one line per image: no path folded over several lines
    assert all(any(path in row for path in images) for row in rows)


def test_registry_monitor_and_review_as_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path / "data"))
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    bundled = ModelFolder.read(default_model_dir()).version
    models = lines(runner.invoke(app, ["models", "list", "--json"]))
    assert [(m["version"], m["alias"], m["registered_by"]) for m in models] == [(bundled, "champion", "lotlens")]
    assert models[0]["created_at"].startswith("20")  # ISO 8601
    shown = lines(runner.invoke(app, ["models", "show", bundled]))
    assert len(shown) == 1
    assert shown[0]["model"]["version"] == bundled
    assert [p["to_version"] for p in shown[0]["promotions"]] == [bundled]
    assert lines(runner.invoke(app, ["monitor", "--json"])) == []  # nothing served yet: no rows, no flags
    assert lines(runner.invoke(app, ["dataset", "review", "--json"])) == []
    report = lines(runner.invoke(app, ["reclassify", "--all", "--json"]))
    assert len(report) == 1
    assert (report[0]["model_version"], report[0]["images"]) == (bundled, 0)


def test_commands_that_change_things_answer_one_json_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path / "data"))
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    bundled = ModelFolder.read(default_model_dir()).version
    (registered,) = lines(
        runner.invoke(app, ["models", "register", str(variant(tmp_path, "lotlens-b", 0.4)), "--json"])
    )
    assert (registered["version"], registered["path"]) == ("lotlens-b", "models/lotlens-b")
    (promoted,) = lines(runner.invoke(app, ["models", "promote", "lotlens-b", "--reason", "r", "--json"]))
    assert (promoted["from_version"], promoted["to_version"], promoted["action"]) == (bundled, "lotlens-b", "promote")
    (back,) = lines(runner.invoke(app, ["models", "rollback", "--reason", "r", "--json"]))
    assert (back["to_version"], back["action"]) == (bundled, "rollback")
    manifest = make_set(tmp_path / "set", "s", seed=1, per_class=6)
    (split,) = lines(
        runner.invoke(app, ["split", "--manifest", str(manifest), "--out", str(tmp_path / "split"), "--json"])
    )
    assert split["train"]["rows"] + split["test"]["rows"] == len(manifest.read_text().splitlines()) - 1
    assert split["test"]["path"] == str(tmp_path / "split" / "test.csv")
