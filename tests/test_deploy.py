"""docs/deploy.md cannot rot: every `sh` block runs here, in order, on a scratch layout (the
guide's /etc/lotlens, /srv/lotlens and /opt/lotlens moved under a temporary folder, a fresh
PostgreSQL database, the API started from deploy/lotlens-api.service's own ExecStart); every
`sh install` block (it changes the host) is checked instead: the files it copies exist, the units it
enables are in deploy/, and every unit passes `systemd-analyze verify` and parses its command.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lotlens.config import Settings

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "deploy.md"
DEPLOY = REPO / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
VENV_BIN = Path(sys.executable).parent
LOTLENS = "/opt/lotlens/.venv/bin/lotlens"
HOST_COMMANDS = {"useradd", "install", "python3.11", "/opt/lotlens/.venv/bin/pip", "cp", "systemctl"}

pytestmark = pytest.mark.integration  # PostgreSQL, pg_dump, a real server


def blocks(kind: str) -> list[str]:
    """The guide's fenced blocks whose info string is exactly `kind`, in order."""
    return [b for k, b in re.findall(r"^```([^\n]*)\n(.*?)^```$", GUIDE.read_text(), re.S | re.M) if k == kind]


def unit(path: Path) -> dict[str, str]:
    """A unit file's keys (the last value of each; enough for these units)."""
    keys = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            keys[key.strip()] = value.strip()
    return keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Layout:
    """The guide's paths under `root`, and the environment its blocks run in."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        (root / "opt/lotlens").mkdir(parents=True)
        (root / "opt/lotlens/.venv").symlink_to(VENV_BIN.parent)
        # What the `sh install` blocks leave behind: the folders and the settings file.
        for folder in ("srv/lotlens/data", "srv/lotlens/backup", "etc/lotlens"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = self.local((DEPLOY / "lotlens.env").read_text())
        env = re.sub(r"(?m)^LOTLENS_DATABASE_URL=.*$", f"LOTLENS_DATABASE_URL={database_url}", env)
        env = re.sub(r"(?m)^LOTLENS_BROKER_URL=.*$", "LOTLENS_BROKER_URL=amqp://guest:guest@127.0.0.1:5672//", env)
        env = re.sub(r"(?m)^LOTLENS_PORT=.*$", f"LOTLENS_PORT={self.port}", env)
        self.env_file = root / "etc/lotlens/lotlens.env"
        self.env_file.write_text(env)
        self.base_env = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(root / "srv/lotlens"),
            "LANG": "C.UTF-8",
        }

    def local(self, text: str) -> str:
        for path in ("/etc/lotlens", "/srv/lotlens", "/opt/lotlens"):
            text = text.replace(path, str(self.root) + path)
        return text

    def run(self, block: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.local(block)],
            cwd=self.root / "srv/lotlens",
            env=self.base_env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def start_api(self) -> subprocess.Popen[str]:
        """`lotlens-api.service` as systemd would start it: its EnvironmentFile, folder and command."""
        keys = unit(DEPLOY / "lotlens-api.service")
        env = dict(self.base_env)
        for line in Path(self.local(keys["EnvironmentFile"])).read_text().splitlines():
            if line and not line.startswith("#"):
                name, value = line.split("=", 1)
                env[name] = value
        self.api_log = self.root / "lotlens-api.log"  # the journal
        with self.api_log.open("w") as log:
            proc = subprocess.Popen(
                shlex.split(self.local(keys["ExecStart"])),
                cwd=self.local(keys["WorkingDirectory"]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        proc.kill()
        proc.wait()
        raise AssertionError(f"lotlens-api did not start: {self.api_log.read_text()[-3000:]}")


@pytest.fixture
def database() -> Iterator[str]:
    import psycopg

    pg_admin = os.environ.get("LOTLENS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        admin = psycopg.connect(pg_admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise  # CI must test PostgreSQL for real, never skip it
        pytest.skip(f"PostgreSQL not reachable at {pg_admin}: {exc}")
    name = f"lotlens_deploy_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="the backup blocks need pg_dump and pg_restore")
def test_every_sh_block_of_the_guide_runs(tmp_path: Path, database: str) -> None:
    layout = Layout(tmp_path, database)
    outputs: list[str] = []
    api = None
    try:
        for block in blocks("sh"):
            if "curl " in block and api is None:
                api = layout.start_api()  # `systemctl enable --now lotlens-api.service`
            if "pg_restore" in block and api is not None:
                api.terminate()  # "with the services stopped"
                api.wait(timeout=30)
                api = None
            res = layout.run(block)
            assert res.returncode == 0, f"{block}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
            outputs.append(res.stdout + res.stderr)
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
    text = "\n".join(outputs)
    secrets = tmp_path / "etc/lotlens/secrets"
    assert {p.name for p in secrets.iterdir()} == {
        "LOTLENS_API_KEYS",
        "LOTLENS_SESSION_SECRET",
        "LOTLENS_WEBHOOK_SECRET",
    }
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    settings_seen = [o for o in outputs if "LOTLENS_API_KEYS=" in o]
    assert settings_seen, "config show printed no settings"
    assert '"role": "scraper"' in settings_seen[0]
    assert "lotlens_deploy_" in settings_seen[0]  # the database in effect is the guide's
    for path in secrets.iterdir():  # no secret in any output; the key list's keys one by one
        for secret in re.findall(r'"key": "([^"]+)"', path.read_text()) or [path.read_text()]:
            assert secret not in text, f"{path.name} shows in the guide's output"
    assert "as the champion" in text  # db upgrade registered the bundled model
    assert '{"status":"ok"}' in text  # /healthz
    assert (tmp_path / "srv/lotlens/backup/lotlens.dump").stat().st_size > 1000
    assert (tmp_path / "srv/lotlens/backup/lotlens-data.tar.gz").stat().st_size > 1000
    assert text.count("champion") >= 3  # models list before, and after the restore
    assert "would delete 0" in text
    assert "deleted 0" in text
    journal = (tmp_path / "lotlens-api.log").read_text()
    assert "lotlens_deploy_" in journal  # serve logged the database it uses
    assert all(line.startswith("{") for line in journal.splitlines() if line)  # LOTLENS_LOG_FORMAT=json


def test_host_blocks_copy_files_that_exist_and_enable_units_of_deploy() -> None:
    lines = [line for block in blocks("sh install") for line in block.splitlines() if line.strip()]
    assert lines, "the guide has no install block"
    for line in lines:
        words = shlex.split(line)
        assert words[0] in HOST_COMMANDS, f"an install line the test does not know: {line}"
        if words[0] == "cp":
            for source in words[1:-1]:
                assert (REPO / source).is_file(), line
        if words[0] == "systemctl" and words[1] == "enable":
            for name in (w for w in words[2:] if not w.startswith("-")):
                assert (DEPLOY / name).is_file(), line
        if words[0].endswith("/pip"):
            assert (REPO / words[words.index("-c") + 1]).is_file()
    copied = {Path(w).name for line in lines if line.startswith("cp ") for w in shlex.split(line)[1:-1]}
    assert copied == {p.name for p in DEPLOY.iterdir()}, "deploy/ holds a file the guide never installs"


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_unit_runs_a_lotlens_command_that_parses(path: Path) -> None:
    keys = unit(path)
    assert keys["EnvironmentFile"] == "/etc/lotlens/lotlens.env"
    assert keys["User"] == "lotlens"
    words = shlex.split(keys["ExecStart"])
    assert words[0] == LOTLENS
    res = subprocess.run([str(VENV_BIN / "lotlens"), *words[1:], "--help"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    for path in [*UNITS, *DEPLOY.glob("*.timer")]:
        (tmp_path / path.name).write_text(path.read_text().replace(LOTLENS, str(VENV_BIN / "lotlens")))
    names = sorted(p.name for p in tmp_path.iterdir())
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True
    )
    assert (res.returncode, res.stdout + res.stderr) == (0, "")


def test_the_sample_settings_are_real_settings_and_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lotlens.config import load

    names = {"LOTLENS_" + n.upper() for n in Settings.model_fields} | {"LOTLENS_SECRETS_DIR"}
    lines = (DEPLOY / "lotlens.env").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(pairs) <= names, "deploy/lotlens.env names a setting lotlens does not have"
    for name in os.environ:
        if name.startswith("LOTLENS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name, value in pairs.items():
        monkeypatch.setenv(name, str(tmp_path) if name == "LOTLENS_SECRETS_DIR" else value)
    settings = load()
    assert settings.database_url == pairs["LOTLENS_DATABASE_URL"]
    assert str(settings.data_dir) == pairs["LOTLENS_DATA_DIR"]
    assert settings.trusted_proxies == pairs["LOTLENS_TRUSTED_PROXIES"]
