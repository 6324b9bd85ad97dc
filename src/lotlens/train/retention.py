"""Retention of kept image bytes: `lotlens images prune` deletes the bytes of images no advertiser
has shown for a while, unless a dataset version uses them or someone fixed them (the next dataset
needs those), and drops old days of the watch's served-image rows.

What is kept and why is decided from the store and the dataset folders, never from the file's own
age alone: an image shown every day is as old as its first download.

`lotlens cache prune` bounds each host's local cache folder (`LOTLENS_CACHE_DIR`), where copies live
that can always be made again: review-page thumbnails (gone with their image's kept bytes, and
after a while anyway), local copies of model folders from a remote storage root (but those of the
registry's aliases), training copies of remote files, and partial writes a crash left.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lotlens.config import Settings
from lotlens.storage import Storage
from lotlens.store import Store
from lotlens.store.images import ImageFolder
from lotlens.store.registry import Registry
from lotlens.train.dataset import DATASETS, read_rows


@dataclass
class PruneReport:
    """What `prune` found: images by the reason they stay, and what went."""

    images: int = 0
    in_dataset: int = 0
    fixed: int = 0
    recent: int = 0
    removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    served_rows_removed: int = 0
    dry_run: bool = False


def dataset_keys(settings: Settings) -> set[str]:
    """The content keys every dataset version's manifest uses."""
    keys: set[str] = set()
    for version in Storage.from_settings(settings).folders(DATASETS):
        if version.startswith("ds-"):
            keys.update(r.image_key for r in read_rows(settings, version))
    return keys


def prune(
    settings: Settings,
    store: Store,
    older_than: timedelta,
    served_older_than: timedelta,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneReport:
    """Delete the kept bytes of images last shown before `now - older_than` (or, never shown, kept
    before then) that no dataset uses and nobody fixed; drop served-image rows older than
    `served_older_than`. With `dry_run`, only count."""
    now = now or datetime.now(UTC)
    cutoff = now - older_than
    folder = ImageFolder(Storage.from_settings(settings))
    files = folder.keys()
    report = PruneReport(images=len(files), dry_run=dry_run)
    keys = sorted(files)
    thumb_sides = sorted((settings.resolved_cache_dir() / "thumbs").glob("*"))  # listed once, not per image
    used = dataset_keys(settings)
    fixed: set[str] = set()
    for i in range(0, len(keys), 1000):
        fixed |= store.fixed_keys(keys[i : i + 1000])
    seen = store.last_seen(keys)
    for key in keys:
        if key in used:
            report.in_dataset += 1
        elif key in fixed:
            report.fixed += 1
        elif seen[key] >= cutoff if key in seen else files[key][1] >= cutoff:
            report.recent += 1
        else:
            report.removed.append(key)
            if not dry_run:
                folder.remove(key)
                _remove_thumbnails(thumb_sides, key)  # this host's; others' by `prune_cache`
            report.bytes_freed += files[key][0]
    if not dry_run:
        report.served_rows_removed = store.forget_served((now - served_older_than).date())
    return report


# -- the local cache folder ----------------------------------------------------------------------

PARTIAL_AGE = 3600.0  # seconds: a `.partial-*` older than this is a crashed write, not one under way
_MODEL_COPY = re.compile(r"^(?P<version>.+)-[0-9a-f]{16}$")


@dataclass
class CachePruneReport:
    """What `prune_cache` removed (or, with `dry_run`, would), by kind, and the bytes freed."""

    thumbnails: int = 0
    thumbnails_unkept: int = 0  # of them: their image's kept bytes are gone
    model_copies: int = 0
    mirror_files: int = 0
    partials: int = 0
    bytes_freed: int = 0
    kept_model_copies: list[str] = field(default_factory=list)
    dry_run: bool = False


def _remove_thumbnails(sides: list[Path], content_key: str) -> None:
    """The image's thumbnail in each of the cache's `thumbs/<side>` folders."""
    rel = ImageFolder.relpath(content_key).removeprefix("images/")
    for side in sides:
        (side / f"{rel}.jpg").unlink(missing_ok=True)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def prune_cache(
    settings: Settings, store: Store, older_than: timedelta, dry_run: bool = False, now: float | None = None
) -> CachePruneReport:
    """Remove from this host's cache folder: thumbnails cut before `now - older_than` or whose
    image's kept bytes are gone; model copies not used since then (a load touches its copy) that no
    registry alias names; training copies (`mirror/`) older than that; partial writes older than an
    hour. Everything removed is made again on its next use."""
    now = time.time() if now is None else now
    cutoff = now - older_than.total_seconds()
    cache = settings.resolved_cache_dir()
    report = CachePruneReport(dry_run=dry_run)

    def drop(path: Path) -> None:
        report.bytes_freed += _size(path)
        if dry_run:
            return
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    if not cache.is_dir():
        return report
    for partial in cache.rglob(".partial-*"):
        if partial.exists() and partial.lstat().st_mtime < now - PARTIAL_AGE:
            report.partials += 1
            drop(partial)
    thumbs = sorted((cache / "thumbs").rglob("*.jpg"))
    kept = set(ImageFolder(Storage.from_settings(settings)).keys()) if thumbs else set()
    for thumb in thumbs:
        unkept = "c:" + thumb.stem not in kept
        if unkept or thumb.stat().st_mtime < cutoff:
            report.thumbnails += 1
            report.thumbnails_unkept += unkept
            drop(thumb)
    aliased = set(Registry(store).aliases().values())
    models = cache / "models"
    for copy in sorted(models.iterdir()) if models.is_dir() else []:
        m = _MODEL_COPY.match(copy.name)
        if not copy.is_dir() or m is None:
            continue
        if m["version"] in aliased or copy.stat().st_mtime >= cutoff:
            report.kept_model_copies.append(copy.name)
            continue
        report.model_copies += 1
        drop(copy)
    mirror = cache / "mirror"
    for path in sorted(mirror.rglob("*")) if mirror.is_dir() else []:
        if path.is_file() and path.stat().st_mtime < cutoff:
            report.mirror_files += 1
            drop(path)
    if not dry_run:  # folders the removals emptied
        for root in (cache / "thumbs", mirror):
            for folder in sorted(root.rglob("*"), key=lambda p: -len(p.parts)) if root.is_dir() else []:
                if folder.is_dir() and not any(folder.iterdir()):
                    os.rmdir(folder)
    return report
