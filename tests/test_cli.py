"""`lotlens classify` on files and URLs, as a person runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from lotlens.cli import app
from lotlens.labels import TYPES
from lotlens.vision.pipeline import ModelFolder, default_model_dir

from synth import car, jpeg, make_set, variant

runner = CliRunner()


def lines(res: Result) -> list[dict[str, Any]]:
    """A --json answer: JSON Lines, one object per line."""
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.stdout.splitlines()]


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    good = tmp_path / "car.jpg"
    good.write_bytes(jpeg(car("Blue", "scene", 1)))
    html = tmp_path / "page.jpg"
    html.write_bytes(b"<html><body>not an image</body></html>")
    return [str(good), str(html), str(tmp_path / "missing.jpg")]


def test_classify_json_answers_in_order_and_skips_with_reasons(files: list[str]) -> None:
    res = runner.invoke(app, ["classify", "--json", *files])
    assert res.exit_code == 0  # skipped images do not fail the batch
    out = lines(res)
    assert [r["source"] for r in out] == files
    ok, html, missing = out
    assert ok["status"] == "ok"
    assert ok["type"] in TYPES
    assert ok["model_version"]
    assert set(ok["scores"]["type"]) == set(TYPES)
    assert (html["status"], html["reason"]) == ("skipped", "not_an_image")
    assert (missing["status"], missing["reason"]) == ("skipped", "not_found")


def test_classify_table(files: list[str]) -> None:
    res = runner.invoke(app, ["classify", files[0]])
    assert res.exit_code == 0, res.output
    assert "car.jpg" in res.stdout
    assert "model " in res.stdout


def test_classify_urls_from_a_local_server(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    urls = [f"{server}/car.jpg", f"{server}/missing.jpg"]
    blocked = runner.invoke(app, ["classify", "--json", urls[0]])
    assert lines(blocked)[0]["reason"] == "blocked_address"
    monkeypatch.setenv("LOTLENS_ALLOW_PRIVATE_ADDRESSES", "true")
    out = lines(runner.invoke(app, ["classify", "--json", *urls]))
    assert out[0]["status"] == "ok"
    assert out[0]["type"] in TYPES
    assert (out[1]["status"], out[1]["reason"]) == ("skipped", "http_404")


def test_classify_with_a_missing_model_is_a_clear_error(tmp_path: Path, files: list[str]) -> None:
    res = runner.invoke(app, ["classify", "--model", str(tmp_path), files[0]])
    assert res.exit_code == 2
    assert "not a model folder" in res.output


def test_classify_through_the_service_with_cache_and_fix(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOTLENS_ALLOW_PRIVATE_ADDRESSES", "true")
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path / "data"))
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{server}/img/cli.jpg?name=yellow&etag=%22cli%22\n\n{server}/missing.jpg\n")
    first = runner.invoke(app, ["classify", "--advertiser", "a", "--from-file", str(urls), "--json"])
    assert first.exit_code == 0, first.output
    ok, missing = lines(first)
    assert (ok["status"], ok["answer_source"]) == ("ok", "model")
    assert (missing["status"], missing["reason"]) == ("skipped", "http_404")
    second = lines(runner.invoke(app, ["classify", "--advertiser", "a", "--from-file", str(urls), "--json"]))
    assert second[0]["answer_source"] == "cache"
    new_type = next(t for t in TYPES if t != ok["type"])
    fixed = runner.invoke(app, ["fix", ok["image_key"], "--advertiser", "a", "--type", new_type, "--actor", "ana"])
    assert fixed.exit_code == 0, fixed.output
    assert f"type: {ok['type']} -> {new_type}" in fixed.stdout
    third = lines(runner.invoke(app, ["classify", "--advertiser", "a", "--from-file", str(urls), "--json"]))
    assert (third[0]["type"], third[0]["answer_source"]) == (new_type, "manual")
    table = runner.invoke(app, ["classify", "--advertiser", "a", f"{server}/img/cli.jpg?name=yellow&etag=%22cli%22"])
    assert "manual" in table.stdout


def test_fix_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path))
    assert runner.invoke(app, ["fix", "c:" + "0" * 64, "--type", "Stock"]).exit_code == 2
    res = runner.invoke(app, ["fix", "c:" + "0" * 64, "--type", "Stock", "--scope", "global"])
    assert res.exit_code == 3  # not found (the README's table of exit codes)
    assert "unknown image" in res.output
    res = runner.invoke(app, ["fix", "c:" + "0" * 64, "--type", "Stock", "--color", "Beige", "--scope", "global"])
    assert (res.exit_code, "unknown color" in res.output) == (2, True)


def test_db_upgrade_and_nothing_to_classify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path))
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lotlens.db").is_file()
    assert runner.invoke(app, ["classify"]).exit_code == 2


def test_serve_refuses_a_public_bind_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOTLENS_API_KEYS", raising=False)
    res = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert res.exit_code == 2
    assert "refusing to bind" in res.output


@pytest.mark.slow
def test_retraining_on_the_same_data_leaves_the_model_folder_untouched(tmp_path: Path) -> None:
    manifest = make_set(tmp_path, "train", seed=1, per_class=12)
    model = tmp_path / "model"

    def train(seed: str) -> Result:
        args = ["--generated-placeholders", "12", "--seed", seed, "--name", "tiny"]
        res = runner.invoke(app, ["train", "--manifest", str(manifest), "--out", str(model), *args])
        assert res.exit_code == 0, res.output
        return res

    assert "wrote" in train("3").stdout
    before = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in model.iterdir()}
    again = train("3")
    assert "unchanged" in again.stdout
    assert {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in model.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no scratch left
    # stderr is not a terminal here: progress comes as log lines instead of a bar
    assert "fit: 2/2" in again.stderr
    other = train("4")
    assert "wrote" in other.stdout
    assert json.loads((model / "model.json").read_text())["seed"] == 4
    assert (model / "backbone.onnx").read_bytes() == before["backbone.onnx"][0]


def test_rollback_after_the_first_promotion_returns_to_the_bundled_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path / "data"))
    bundled = ModelFolder.read(default_model_dir()).version
    first = runner.invoke(app, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"registered {bundled} as the champion" in first.stdout
    again = runner.invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0
    assert "registered" not in again.stdout  # once a champion exists, nothing changes
    candidate = variant(tmp_path, "lotlens-b", 0.4)
    assert runner.invoke(app, ["models", "register", str(candidate)]).exit_code == 0
    promoted = runner.invoke(app, ["models", "promote", "lotlens-b", "--reason", "sweep winner"])
    assert promoted.stdout.strip() == f"champion: {bundled} -> lotlens-b"
    back = runner.invoke(app, ["models", "rollback", "--reason", "fix rate up"])
    assert back.exit_code == 0, back.output
    assert back.stdout.strip() == f"champion: lotlens-b -> {bundled} (rollback)"
    assert (tmp_path / "data" / "models" / bundled / "backbone.onnx").is_file()  # a copy, not the package's
