"""Packaging: ranges in pyproject.toml, exact pins in requirements.lock that satisfy them, no torch in
any default install, the licence metadata, and `lotlens --version` / `-h`."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

import lotlens
from lotlens.cli import app

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
runner = CliRunner()


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra] if not r.startswith("lotlens")]
    return found


def test_the_lock_pins_every_dependency_within_its_range() -> None:
    pins = locked()
    for req in requirements("train", "dev"):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock (run scripts/lock)"
        assert req.specifier.contains(pins[name]), f"requirements.lock has {req.name}=={pins[name]}, outside {req}"


def test_no_torch_in_default_installs() -> None:
    assert not {"torch", "torchvision"} & set(locked())
    for req in requirements("train", "dev"):
        assert canonicalize_name(req.name) != "torch"
    torch_lines = re.findall(r'"torch[^"]*"', (REPO / "pyproject.toml").read_text())
    assert torch_lines == ['"torch==2.13.0"']  # the export extra only


def test_python_311_to_313() -> None:
    spec = Requirement("python" + PYPROJECT["project"]["requires-python"]).specifier
    assert all(spec.contains(v) for v in ("3.11.9", "3.12.1", "3.13.0"))
    assert not spec.contains("3.10.14")


def test_licence_metadata_matches_the_licence_file() -> None:
    meta = importlib.metadata.metadata("lotlens")
    assert meta["License-Expression"] == PYPROJECT["project"]["license"] == "LicenseRef-Proprietary"
    assert (REPO / "LICENSE").read_text().startswith("Copyright 2026 the lotlens authors. All rights reserved.")
    assert "LICENSE" in PYPROJECT["project"]["license-files"]


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout == f"lotlens {lotlens.__version__}\n"
    assert importlib.metadata.version("lotlens") == lotlens.__version__


@pytest.mark.parametrize("args", [["-h"], ["models", "-h"], ["models", "list", "-h"], ["serve", "-h"]])
def test_h_is_help(args: list[str]) -> None:
    res = runner.invoke(app, args, prog_name="lotlens")
    assert res.exit_code == 0, res.output
    assert "Usage: lotlens" in res.stdout
    assert res.stdout == runner.invoke(app, [*args[:-1], "--help"], prog_name="lotlens").stdout
