"""NOTICE cannot rot: every hash in it matches its file, and every model artifact lotlens ships or
loads has an entry with an origin and a licence."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACT_SUFFIXES = (".onnx", ".npz", ".pb", ".pbtxt", ".tflite")


def entries() -> list[dict[str, str]]:
    """The NOTICE's `Artifact:` blocks as {field: value}; continuation lines are indented."""
    blocks = (REPO / "NOTICE").read_text().split("\nArtifact: ")[1:]
    found = []
    for block in blocks:
        fields = {"Artifact": block.splitlines()[0]}
        for m in re.finditer(r"^(\w+): (.*(?:\n  .*)*)", block, re.MULTILINE):
            fields[m[1]] = " ".join(part.strip() for part in m[2].splitlines())
        found.append(fields)
    return found


def resolve(file: str) -> Path:
    """A repository path, or `package:<import name>/<path>` inside an installed package (found
    without importing it: openpibo's `__init__` needs `pkg_resources`)."""
    if not file.startswith("package:"):
        return REPO / file
    package, _, inner = file.removeprefix("package:").partition("/")
    spec = importlib.util.find_spec(package)
    assert spec is not None, f"package {package} is not installed"
    assert spec.submodule_search_locations, f"{package} is not a package"
    return Path(next(iter(spec.submodule_search_locations))) / inner


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_notice_lists_the_shipped_artifacts_with_origin_and_licence() -> None:
    found = entries()
    assert len(found) >= 3
    for e in found:
        assert {"File", "Origin", "Licence", "SHA256"} <= set(e), e["Artifact"]
        assert re.fullmatch(r"[0-9a-f]{64}", e["SHA256"]), e["Artifact"]
    files = {e["File"] for e in found}
    assert "src/lotlens/models/default/backbone.onnx" in files
    assert "src/lotlens/models/default/heads.npz" in files
    assert "src/lotlens/models/detector/ssd_mobilenet_v2_coco.onnx" in files


@pytest.mark.parametrize("entry", entries(), ids=lambda e: e["File"])
def test_notice_hash_matches_the_file(entry: dict[str, str]) -> None:
    path = resolve(entry["File"])
    assert path.is_file(), f"NOTICE lists {entry['File']}, which is missing"
    assert sha256(path) == entry["SHA256"], f"{entry['File']} changed: update its NOTICE entry (origin, licence, hash)"


def test_every_shipped_model_artifact_has_an_entry() -> None:
    listed = {e["File"] for e in entries()}
    shipped = {
        str(p.relative_to(REPO))
        for p in (REPO / "src" / "lotlens" / "models").rglob("*")
        if p.suffix in ARTIFACT_SUFFIXES and p.is_file()
    }
    assert shipped, "no model artifacts found under src/lotlens/models"
    assert shipped <= listed, f"not in NOTICE: {sorted(shipped - listed)}"
