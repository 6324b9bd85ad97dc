"""Settings as an operator meets them: environment, `.env`, a secrets folder, and one-line errors
that name the variable, never its value, and exit 2."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lotlens.cli import app
from lotlens.config import Settings, load
from lotlens.errors import ConfigError

runner = CliRunner()
SHORT_KEY = "short-secret-1"  # under the 16-character minimum: the error must not print it
GOOD_KEY = "a-long-enough-secret-key"
PASSWORD = "hunter2-db-password"


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No `.env` from the checkout, no LOTLENS_* from the shell: each test states what it sets."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("LOTLENS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path / "data"))


def one_line_error(args: list[str], variable: str, *secrets: str) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    assert variable in lines[0]
    assert "Traceback" not in res.output
    for secret in secrets:
        assert secret not in res.output
    return lines[0]


def test_a_short_api_key_is_named_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_API_KEYS", json.dumps([{"name": "ops", "key": SHORT_KEY, "role": "admin"}]))
    line = one_line_error(["config", "show"], "LOTLENS_API_KEYS", SHORT_KEY)
    assert "at least 16 characters" in line
    for command in (["serve"], ["db", "upgrade"], ["models", "list"], ["monitor"]):
        one_line_error(command, "LOTLENS_API_KEYS", SHORT_KEY)


def test_api_keys_that_are_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_API_KEYS", f"ops:{SHORT_KEY}:admin")
    line = one_line_error(["config", "show"], "LOTLENS_API_KEYS", SHORT_KEY)
    assert "not valid JSON" in line


def test_every_wrong_setting_is_named_on_the_same_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_PORT", "70000")
    monkeypatch.setenv("LOTLENS_LOG_FORMAT", "xml")
    line = one_line_error(["config", "show"], "LOTLENS_PORT")
    assert "LOTLENS_LOG_FORMAT" in line


def test_an_unparseable_database_url_hides_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATABASE_URL", f"postgres ql://ops:{PASSWORD}@db/lotlens")
    line = one_line_error(["db", "upgrade"], "LOTLENS_DATABASE_URL", PASSWORD)
    assert "not a database URL" in line


@pytest.mark.parametrize("command", [["db", "upgrade"], ["serve"], ["models", "list"]])
def test_a_database_that_cannot_be_reached(command: list[str], free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_DATABASE_URL", f"postgresql+psycopg://ops:{PASSWORD}@127.0.0.1:{free_port}/lotlens")
    line = one_line_error(command, "LOTLENS_DATABASE_URL", PASSWORD)
    assert f"ops:***@127.0.0.1:{free_port}/lotlens" in line
    assert "refused" in line.lower()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("LOTLENS_PORT", str(port))
        line = one_line_error(["serve"], "LOTLENS_PORT")
        assert f"127.0.0.1:{port} is already in use" in line
        one_line_error(["serve", "--port", str(port)], "--port")


def test_an_invalid_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_PORT", "http")
    one_line_error(["serve"], "LOTLENS_PORT")
    monkeypatch.setenv("LOTLENS_PORT", "0")
    one_line_error(["serve"], "LOTLENS_PORT")
    monkeypatch.delenv("LOTLENS_PORT")
    one_line_error(["serve", "--port", "70000"], "--port")


def test_secrets_folder_and_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "LOTLENS_API_KEYS").write_text(json.dumps([{"name": "ops", "key": GOOD_KEY, "role": "admin"}]))
    (secrets / "lotlens_session_secret").write_text("s" * 40)
    monkeypatch.delenv("LOTLENS_DATA_DIR")
    (tmp_path / ".env").write_text(f"LOTLENS_SECRETS_DIR={secrets}\nLOTLENS_DATA_DIR=from-dotenv\nOTHER_TOOL=x\n")
    settings = load()
    assert [(k.name, k.key) for k in settings.api_keys] == [("ops", GOOD_KEY)]
    assert settings.session_secret is not None
    assert settings.session_secret.get_secret_value() == "s" * 40
    assert settings.data_dir == Path("from-dotenv")
    monkeypatch.setenv("LOTLENS_DATA_DIR", "from-env")  # the environment wins over .env
    assert load().data_dir == Path("from-env")


def test_a_secrets_folder_that_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_SECRETS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="LOTLENS_SECRETS_DIR: not a directory"):
        load()


def test_a_secret_file_that_is_not_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "LOTLENS_API_KEYS").write_text(GOOD_KEY)
    monkeypatch.setenv("LOTLENS_SECRETS_DIR", str(tmp_path))
    line = one_line_error(["config", "show"], "LOTLENS_API_KEYS", GOOD_KEY)
    assert "secrets folder" in line


def test_config_show_masks_secrets_and_says_where_state_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTLENS_API_KEYS", json.dumps([{"name": "ops", "key": GOOD_KEY, "role": "admin"}]))
    monkeypatch.setenv("LOTLENS_SESSION_SECRET", "session-" + GOOD_KEY)
    monkeypatch.setenv("LOTLENS_DATABASE_URL", f"postgresql+psycopg://ops:{PASSWORD}@db.internal/lotlens")
    monkeypatch.setenv("LOTLENS_DATA_DIR", "relative-data")
    res = runner.invoke(app, ["config", "show", "--json"])
    assert res.exit_code == 0, res.output
    assert GOOD_KEY not in res.output
    assert PASSWORD not in res.output
    shown = json.loads(res.stdout)
    assert shown["state"]["data_dir"] == str(tmp_path / "relative-data")
    assert shown["state"]["database"] == "postgresql+psycopg://ops:***@db.internal/lotlens"
    assert shown["state"]["model_version"]
    assert shown["settings"]["LOTLENS_API_KEYS"] == [{"name": "ops", "role": "admin", "key": "***"}]
    assert shown["settings"]["LOTLENS_SESSION_SECRET"] == "***"
    table = runner.invoke(app, ["config", "show"])
    assert table.exit_code == 0
    assert str(tmp_path / "relative-data") in table.stdout
    assert "LOTLENS_PORT=8000" in table.stdout
    assert GOOD_KEY not in table.output


def test_settings_are_frozen_once_loaded() -> None:
    from pydantic import ValidationError

    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.port = 9000  # type: ignore[misc]
    assert settings.model_copy(update={"port": 9000}).port == 9000
    assert settings.port == 8000
