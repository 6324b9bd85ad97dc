"""Datasets as immutable versions, built from manual fixes (or imported from a hand-made CSV).

`create` takes the type and color fixes since the previous version, brings their images into the
content-addressed folder, drops what the filters catch (unavailable, unreadable, too small), holds
conflicting labels in the review queue instead of the dataset, splits by advertiser (no advertiser
on both sides), and extends the previous version. A version is named by the hash of its manifest,
so the same inputs give the same version, and an existing version is never written again.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lotlens.config import Settings
from lotlens.errors import FetchError, ImageDecodeError, ManifestError
from lotlens.fetch import Fetcher
from lotlens.imaging import decode
from lotlens.keys import content_key, hamming
from lotlens.labels import COLORS, PLACEHOLDER, TYPES
from lotlens.storage import Storage
from lotlens.store import Store
from lotlens.store.images import ImageFolder
from lotlens.store.repository import FixRecord
from lotlens.store.review import ReviewQueue
from lotlens.train.manifest import read_manifest
from lotlens.train.split import group_split

COLUMNS = ("path", "type", "color", "group", "split", "image_key")
DOUBT = 0.02  # a fixed label the champion gives less than this probability is queued for a look


@dataclass(frozen=True)
class DatasetRow:
    path: str
    type: str | None
    color: str | None
    group: str
    split: str
    image_key: str


@dataclass
class Report:
    """What `create` did: the version, and every image it left out with the reason."""

    version: str
    rows: int
    new_rows: int
    existed: bool
    dropped: dict[str, str] = field(default_factory=dict)  # image key -> reason
    queued: int = 0
    warnings: list[str] = field(default_factory=list)


DATASETS = "datasets"  # versions live at `datasets/<version>/` in the storage root
FILES = ("manifest.csv", "train.csv", "test.csv", "stats.json", "meta.json")


def _get(settings: Settings, version: str, name: str) -> bytes:
    data = Storage.from_settings(settings).get(f"{DATASETS}/{version}/{name}")
    if data is None:
        raise ManifestError(f"no dataset version {version!r} in {settings.resolved_storage_url()}")
    return data


def read_rows(settings: Settings, version: str) -> list[DatasetRow]:
    """The rows of a version.

    Raises:
        ManifestError: no such version.
    """
    text = _get(settings, version, "manifest.csv").decode()
    return [
        DatasetRow(r["path"], r["type"] or None, r["color"] or None, r["group"], r["split"], r["image_key"])
        for r in csv.DictReader(io.StringIO(text, newline=""))
    ]


def read_meta(settings: Settings, version: str) -> dict[str, Any]:
    return dict(json.loads(_get(settings, version, "meta.json")))


def latest_version(settings: Settings) -> str | None:
    """The most recently created version, or None."""
    storage = Storage.from_settings(settings)
    metas = []
    for version in storage.folders(DATASETS):
        data = storage.get(f"{DATASETS}/{version}/meta.json") if version.startswith("ds-") else None
        if data is not None:
            metas.append((json.loads(data)["created"], version))
    return max(metas)[1] if metas else None


def local_copy(settings: Settings, version: str) -> tuple[Path, Path]:
    """A version's folder (`train.csv`, `test.csv`, ...) and the folder its image paths are relative
    to, on the local disk: the storage root itself when it is a folder, else the cache's mirror of
    it, filled first with what it lacks (for training and evaluation, which read files).

    Raises:
        ManifestError: no such version.
    """
    rows = read_rows(settings, version)
    root = Storage.from_settings(settings).mirror([f"{DATASETS}/{version}/{n}" for n in FILES] + [r.path for r in rows])
    return root / DATASETS / version, root


def side_of(group: str, test_size: float) -> str:
    """A deterministic side for a new advertiser: the same advertiser always lands on the same side."""
    h = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_size else "train"


def _labels_from_fixes(
    fixes: Iterable[FixRecord],
) -> tuple[dict[tuple[str, str], tuple[str | None, str]], dict[tuple[str, str], list[dict[str, Any]]]]:
    """(image, field) -> (label, group) where fixes agree (or staff decided), and the conflicts."""
    latest: dict[tuple[str, str], dict[str, FixRecord]] = defaultdict(dict)
    for f in fixes:  # oldest first: later fixes by the same party replace earlier ones
        party = "global" if f.scope == "global" else f"advertiser:{f.advertiser}"
        latest[(f.content_key, f.field)][party] = f
    labels, conflicts = {}, {}
    for key, parties in latest.items():
        if "global" in parties:  # staff decided the shared answer
            g = parties["global"]
            labels[key] = (g.new_value, g.advertiser or "")
            continue
        values = {f.new_value for f in parties.values()}
        if len(values) == 1:
            first = min(parties.values(), key=lambda f: (f.created_at, f.id))
            labels[key] = (first.new_value, first.advertiser or "")
        else:
            conflicts[key] = [
                {"value": f.new_value, "advertiser": f.advertiser, "fix_id": f.id, "actor": f.actor}
                for f in sorted(parties.values(), key=lambda f: f.id)
            ]
    return labels, conflicts


def _manifest_bytes(rows: list[DatasetRow]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r.path, r.type or "", r.color or "", r.group, r.split, r.image_key])
    return buf.getvalue().encode()


def _stats(rows: list[DatasetRow], vehicles: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    typed = [r for r in rows if r.type]
    colored = [r for r in rows if r.color]
    stats: dict[str, Any] = {
        "rows": len(rows),
        "type": dict(sorted(Counter(r.type for r in typed).items())),
        "color": dict(sorted(Counter(r.color for r in colored).items())),
        "split": dict(sorted(Counter(r.split for r in rows).items())),
        "advertiser": dict(sorted(Counter(r.group for r in rows).items())),
        # From the detector, where it ran on the image ("unknown": studio shots, placeholders, imports).
        "vehicle": dict(sorted(Counter(vehicles.get(r.image_key) or "unknown" for r in rows).items())),
        "split_by_type": {s: dict(Counter(r.type for r in typed if r.split == s)) for s in ("train", "test")},
    }
    warnings = []
    for name, counts, labels in (("type", stats["type"], TYPES), ("color", stats["color"], COLORS)):
        total = sum(counts.values())
        for label in labels:
            n = counts.get(label, 0)
            if total and n < max(5, 0.02 * total):
                warnings.append(f"{name} {label}: {n} of {total} rows")
    for adv, n in stats["advertiser"].items():
        if len(rows) >= 20 and n > 0.5 * len(rows):
            warnings.append(f"advertiser {adv} holds {n} of {len(rows)} rows")
    if rows and not any(r.split == "test" for r in rows):
        warnings.append("no test rows: every advertiser is on the train side")
    return stats, warnings


def _write(
    settings: Settings, rows: list[DatasetRow], meta: dict[str, Any], vehicles: dict[str, str] | None = None
) -> tuple[str, bool, list[str]]:
    """Write a version folder (whole or not at all); an existing version is left as it is."""
    rows = sorted(rows, key=lambda r: r.path)
    body = _manifest_bytes(rows)
    version = "ds-" + hashlib.sha256(body).hexdigest()[:12]
    stats, warnings = _stats(rows, vehicles or {})
    files = {
        "manifest.csv": body,
        **{f"{split}.csv": _manifest_bytes([r for r in rows if r.split == split]) for split in ("train", "test")},
        "stats.json": (json.dumps(stats | {"warnings": warnings}, indent=2) + "\n").encode(),
        "meta.json": (json.dumps(meta | {"version": version}, indent=2, default=str) + "\n").encode(),
    }
    if not Storage.from_settings(settings).put_folder(f"{DATASETS}/{version}", files):
        return version, True, warnings
    return version, False, warnings


async def _bring(settings: Settings, store: Store, folder: ImageFolder, keys: list[str]) -> dict[str, bytes | str]:
    """Each image's bytes from the folder, else downloaded again from where it was seen (checked)."""
    out: dict[str, bytes | str] = {}
    seen = store.sightings(keys)
    async with Fetcher(settings) as fetcher:
        for k in keys:
            data = await asyncio.to_thread(folder.get, k)
            if data is None:
                for _, url in seen.get(k, []):
                    try:
                        got = (await fetcher.get(url)).data
                    except FetchError:
                        continue
                    if content_key(got) == k:
                        data = got
                        await asyncio.to_thread(folder.put, k, got)
                        break
            out[k] = data if data is not None else "unavailable"
    return out


def create(
    settings: Settings,
    store: Store,
    *,
    parent: str | None = None,
    since: datetime | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Report:
    """Build the next dataset version from the fixes since `since` (default: since `parent` was made)."""
    parent = parent or latest_version(settings)
    previous = read_rows(settings, parent) if parent else []
    if since is None and parent:
        since = datetime.fromisoformat(read_meta(settings, parent)["created"])
    fixes = store.fixes(since=since)
    labels, conflicts = _labels_from_fixes(fixes)
    decisions = ReviewQueue(store).decisions()
    for key, d in decisions.items():  # a person's decision settles a conflict or a doubt
        if d.status in ("accepted", "relabelled"):
            conflicts.pop(key, None)
            labels[key] = (d.decided_value, labels.get(key, (None, ""))[1] or _first_group(d.candidates))
        else:
            labels.pop(key, None)
            conflicts.pop(key, None)
    prev_by_key = {r.image_key: r for r in previous}
    for (k, fld), (value, _) in list(labels.items()):
        old = prev_by_key.get(k)
        old_value = getattr(old, fld) if old else None
        if old and old_value and value and old_value != value and (k, fld) not in decisions:
            conflicts[(k, fld)] = [
                {"value": old_value, "advertiser": old.group, "source": f"dataset {parent}"},
                {"value": value, "advertiser": labels[(k, fld)][1], "source": "fix"},
            ]
            del labels[(k, fld)]
    # Near-identical images labelled differently by different parties are conflicts too.
    keys = sorted({k for k, _ in labels})
    hashes = store.phashes(keys)
    for fld in ("type", "color"):
        items = [(k, labels[(k, fld)]) for k in keys if (k, fld) in labels and k in hashes]
        for i, (k1, (v1, g1)) in enumerate(items):
            for k2, (v2, g2) in items[i + 1 :]:
                if v1 != v2 and g1 != g2 and hamming(hashes[k1], hashes[k2]) <= settings.phash_distance:
                    for k, v, g, other in ((k1, v1, g1, k2), (k2, v2, g2, k1)):
                        if (k, fld) not in decisions:
                            conflicts[(k, fld)] = [
                                {"value": v, "advertiser": g},
                                {"value": labels[(other, fld)][0], "near": other},
                            ]
        for k in [k for k, f in conflicts if f == fld]:
            labels.pop((k, fld), None)

    new_keys = sorted({k for k, _ in labels})
    folder = ImageFolder(Storage.from_settings(settings))
    got = asyncio.run(_bring(settings, store, folder, new_keys)) if new_keys else {}
    dropped: dict[str, str] = {}
    new_rows: dict[str, DatasetRow] = {}
    groups_side = {r.group: r.split for r in previous}
    for n, k in enumerate(new_keys):
        if on_step:
            on_step(n, len(new_keys))
        data = got[k]
        if isinstance(data, str):
            dropped[k] = data
            continue
        try:
            image = decode(data, min_side=None, max_pixels=settings.max_pixels)
        except ImageDecodeError as exc:
            dropped[k] = f"unreadable: {exc.reason}"
            continue
        if min(image.shape[:2]) < settings.dataset_min_side:
            dropped[k] = f"too_small: {image.shape[1]}x{image.shape[0]}"
            continue
        old = prev_by_key.get(k)
        type_ = labels.get((k, "type"), (old.type if old else None, ""))[0]
        color = labels.get((k, "color"), (old.color if old else None, ""))[0]
        if type_ == PLACEHOLDER:
            color = None
        group = (labels.get((k, "type")) or labels.get((k, "color")) or (None, ""))[1] or "global"
        if old:
            group = old.group
        split = groups_side.setdefault(group, side_of(group, settings.dataset_test_size))
        new_rows[k] = DatasetRow(folder.relpath(k), type_, color, group, split, k)

    held = {k for k, _ in conflicts}
    rows = [r for r in previous if r.image_key not in new_rows and r.image_key not in held] + list(new_rows.values())
    meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "parent": parent,
        "since": since.isoformat() if since else None,
        "fixes": len(fixes),
        "filters": {"min_side": settings.dataset_min_side, "phash_distance": settings.phash_distance},
        "dropped": dropped,
        "source": "fixes",
    }
    known = store.answers([r.image_key for r in rows], None)
    vehicles = {k: str(a.scores["vehicle"]) for k, a in known.items() if a.scores.get("vehicle")}
    version, existed, warnings = _write(settings, rows, meta, vehicles)
    queue = ReviewQueue(store)
    for (k, fld), candidates in sorted(conflicts.items()):
        queue.add(version, k, fld, "conflict", candidates, None, 1.0 + len(candidates))
    queued = len(conflicts)
    # Labels the champion's newest prediction strongly disagrees with: in the dataset, but queued.
    answers = store.answers(list(new_rows), None)
    for k, row in sorted(new_rows.items()):
        for fld in ("type", "color"):
            value = getattr(row, fld)
            p = answers[k].scores.get(fld, {}).get(value) if k in answers and value else None
            if p is not None and p < DOUBT:
                queue.add(
                    version,
                    k,
                    fld,
                    "doubt",
                    [{"value": value, "advertiser": row.group}],
                    getattr(answers[k], fld),
                    1.0 - p,
                )
                queued += 1
    return Report(version, len(rows), len(new_rows), existed, dropped, queued, warnings)


def _first_group(candidates: list[dict[str, Any]]) -> str:
    return next((str(c["advertiser"]) for c in candidates if c.get("advertiser")), "global")


def import_csv(settings: Settings, manifest: Path, images_root: Path | None = None) -> Report:
    """A hand-made manifest (the `train`/`evaluate` format) as a dataset version of its own."""
    root = images_root or manifest.parent
    folder = ImageFolder(Storage.from_settings(settings))
    src = read_manifest(manifest)
    with manifest.open(newline="") as f:
        splits = [r.get("split") or "" for r in csv.DictReader(f)]
    if not any(splits):  # no split given: the group-aware, label-stratified split `train` uses
        test_idx = set(group_split(src, settings.dataset_test_size, seed=0)[1])
        splits = ["test" if i in test_idx else "train" for i in range(len(src))]
    rows: dict[str, DatasetRow] = {}
    dropped: dict[str, str] = {}
    for r, split in zip(src, splits, strict=True):
        try:
            data = (root / r.path).read_bytes()
            image = decode(data, min_side=None, max_pixels=settings.max_pixels)
        except OSError:
            dropped[r.path] = "unavailable"
            continue
        except ImageDecodeError as exc:
            dropped[r.path] = f"unreadable: {exc.reason}"
            continue
        if min(image.shape[:2]) < settings.dataset_min_side:
            dropped[r.path] = f"too_small: {image.shape[1]}x{image.shape[0]}"
            continue
        k = content_key(data)
        if k in rows:
            dropped[r.path] = f"duplicate of {rows[k].image_key}"
            continue
        folder.put(k, data)
        side = split if split in ("train", "test") else side_of(r.group, settings.dataset_test_size)
        rows[k] = DatasetRow(folder.relpath(k), r.type, r.color, r.group, side, k)
    meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "parent": None,
        "source": "import",
        "manifest": str(manifest),
        "dropped": dropped,
        "filters": {"min_side": settings.dataset_min_side},
    }
    version, existed, warnings = _write(settings, list(rows.values()), meta)
    return Report(version, len(rows), len(rows), existed, dropped, 0, warnings)


def report_dict(report: Report) -> dict[str, Any]:
    return asdict(report)
