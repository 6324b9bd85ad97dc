"""Retention of kept image bytes: `lotlens images prune` deletes the bytes of images no advertiser
has shown for a while, unless a dataset version uses them or someone fixed them (the next dataset
needs those), and drops old days of the watch's served-image rows.

What is kept and why is decided from the store and the dataset folders, never from the file's own
age alone: an image shown every day is as old as its first download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lotlens.config import Settings
from lotlens.storage import Storage
from lotlens.store import Store
from lotlens.store.images import ImageFolder
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
            report.bytes_freed += files[key][0]
    if not dry_run:
        report.served_rows_removed = store.forget_served((now - served_older_than).date())
    return report
