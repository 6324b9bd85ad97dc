"""Logging configured once at the edge: text or JSON lines on stderr, the request id on every record
of a request, and `serve` logging what it uses (uvicorn's own lines included) and registering the
bundled model as champion at its first start."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lotlens import logs
from lotlens.cli import app
from lotlens.store import Store
from lotlens.store.registry import Registry
from lotlens.vision.pipeline import ModelFolder, default_model_dir

runner = CliRunner()


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    log = logging.getLogger("lotlens.test")
    log.info("outside")
    token = logs.request_id.set("req-42")
    try:
        log.warning("inside %s", "a request", extra={"advertiser": "a"})
    finally:
        logs.request_id.reset(token)
    log.debug("below the level")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["message"], r["request_id"]) for r in lines] == [("outside", None), ("inside a request", "req-42")]
    assert (lines[1]["level"], lines[1]["logger"], lines[1]["advertiser"]) == ("WARNING", "lotlens.test", "a")


def test_text_lines_and_one_handler_however_often_configured(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("DEBUG", "json")
    logs.configure("WARNING", "text")
    log = logging.getLogger("lotlens.test")
    log.info("too low")
    token = logs.request_id.set("abc")
    log.error("boom")
    logs.request_id.reset(token)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.rstrip().endswith("ERROR lotlens.test [abc]: boom")


def test_the_request_id_follows_work_into_threads(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")

    async def handle() -> None:
        logs.request_id.set("req-thread")
        await asyncio.to_thread(logging.getLogger("lotlens.test").info, "in a worker thread")

    asyncio.run(handle())
    assert json.loads(capsys.readouterr().err)["request_id"] == "req-thread"


def test_accept_request_id() -> None:
    assert logs.accept_request_id("abc-123_X.y:z") == "abc-123_X.y:z"
    made = {logs.accept_request_id(v) for v in (None, "", "two words", "x" * 129, "forged\nline")}
    assert len(made) == 5  # each replaced by a fresh id
    assert all(len(v) == 32 for v in made)


def test_cli_logs_what_a_long_command_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOTLENS_LOG_FORMAT", "json")
    res = runner.invoke(app, ["monitor"])
    assert res.exit_code == 0, res.output
    start = json.loads(res.stderr.splitlines()[0])
    assert start["command"] == "monitor"
    assert start["database"] == f"sqlite:///{tmp_path / 'data' / 'lotlens.db'}"
    assert start["data_dir"] == str(tmp_path / "data")
    monkeypatch.setenv("LOTLENS_LOG_LEVEL", "warning")  # case-insensitive
    quiet = runner.invoke(app, ["monitor"])
    assert quiet.exit_code == 0
    assert quiet.stderr == ""


def test_serve_logs_through_the_configured_handler(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOTLENS_")}
    env |= {"LOTLENS_DATA_DIR": str(tmp_path / "data"), "LOTLENS_PORT": str(port), "LOTLENS_LOG_FORMAT": "json"}
    lotlens = Path(sys.executable).with_name("lotlens")
    proc = subprocess.Popen([lotlens, "serve"], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "serve did not answer within 60 s"
            time.sleep(0.2)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines()]  # every line is JSON: one handler, one format
    start = next(r for r in lines if r.get("command") == "serve")
    assert start["listening"] == f"127.0.0.1:{port}"
    bundled = ModelFolder.read(default_model_dir()).version
    assert start["model"] == bundled
    # the first start registered the bundled model as champion, so a first promotion can be rolled back
    store = Store.from_url(f"sqlite:///{tmp_path / 'data' / 'lotlens.db'}")
    assert Registry(store).alias("champion") == bundled
    store.engine.dispose()
    messages = [(r["logger"], r["message"]) for r in lines]
    assert ("uvicorn.error", "Application startup complete.") in messages
    assert ("lotlens.champion", f"now serving {bundled}") in messages  # lost before logging was configured
    assert any(logger == "uvicorn.access" and "/healthz" in m for logger, m in messages)
