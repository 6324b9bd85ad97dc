"""The manifest CSV that `train` and `evaluate` read: `path,type,color,group`, extra columns ignored."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lotlens.errors import ManifestError
from lotlens.labels import PLACEHOLDER, normalise_color, normalise_type

REQUIRED = ("path", "type", "color")
COLUMNS = ("path", "type", "color", "group")


@dataclass(frozen=True)
class Row:
    """One labelled image. Empty type or color means unknown; `group` is the source/advertiser."""

    path: str
    type: str | None
    color: str | None
    group: str

    @property
    def key(self) -> str:
        """The label combination, used to stratify splits."""
        return f"{self.type or ''}|{self.color or ''}"


def read_manifest(path: Path) -> list[Row]:
    """Read and validate a manifest.

    Raises:
        ManifestError: missing file or columns, an unknown label, or no labelled row.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
    rows = []
    for n, rec in enumerate(reader, start=2):
        try:
            type_ = normalise_type(rec.get("type"))
            color = normalise_color(rec.get("color"))
        except ValueError as exc:
            raise ManifestError(f"{path}:{n}: {exc}") from exc
        if not (rec.get("path") or "").strip():
            raise ManifestError(f"{path}:{n}: empty path")
        if type_ == PLACEHOLDER:
            color = None
        rows.append(Row(rec["path"].strip(), type_, color, (rec.get("group") or "").strip() or "unknown"))
    if not any(r.type or r.color for r in rows):
        raise ManifestError(f"{path}: no labelled row")
    return rows


def write_manifest(rows: Iterable[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r.path, r.type or "", r.color or "", r.group])


def manifest_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
