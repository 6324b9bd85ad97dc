"""The storage root: kept image bytes, dataset versions and model folders, under one URL that fsspec
understands (`LOTLENS_STORAGE_URL`): the data folder by default, `s3://bucket/prefix` when API
replicas and workers run on several machines.

Everything in it is named by a POSIX path relative to the root (`images/ab/<sha256>`,
`models/<version>`, `datasets/<version>`), and that relative path is what the store records, so
every process pointed at the same root reads the same files. Files are written once and never
changed. A folder is complete once its index (`FILES.sha256`, written last) is there; a remote
folder is copied into a local cache folder named by the index's hash before it is read, since
onnxruntime and the trainers need files on disk.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from lotlens.config import Settings
from lotlens.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

INDEX = "FILES.sha256"
VARIABLE = "LOTLENS_STORAGE_URL"


def _modified(info: Mapping[str, Any]) -> datetime:
    """An fsspec listing entry's last-modified time (S3 says LastModified, others mtime)."""
    when = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    if isinstance(when, datetime):
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    if isinstance(when, int | float):
        return datetime.fromtimestamp(when, UTC)
    return datetime.now(UTC)  # unknown: counts as new, so retention keeps it


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def index_bytes(hashes: Mapping[str, str]) -> bytes:
    """A folder's index in `sha256sum` format (`<hex>  <name>` lines, sorted by name)."""
    return "".join(f"{h}  {name}\n" for name, h in sorted(hashes.items())).encode()


def _remote_errors() -> tuple[type[Exception], ...]:
    """What a remote root's client raises besides OSError (s3fs turns S3's answers into OSErrors,
    but not a connection or credentials failure)."""
    if importlib.util.find_spec("botocore") is None:
        return ()
    from botocore.exceptions import BotoCoreError

    return (BotoCoreError,)


class Storage:
    """One storage root. Cheap to build (nothing is opened until first use); safe to share between
    threads, and between processes forked after it was built (each builds its own client).

    Args:
        url: an absolute folder, or `s3://bucket[/prefix]`.
        cache_dir: where remote folders are copied before they are read.
        options: the fsspec filesystem's arguments (credentials among them: never logged or shown).
    """

    def __init__(self, url: str, cache_dir: Path, options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/") if "://" in url else url
        self.cache_dir = cache_dir
        self.local = "://" not in url
        self._options = dict(options or {})
        self._fs: Any = None
        self._pid = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        """The root `settings` name, with its S3 endpoint and credentials (the AWS chain where unset).

        Raises:
            ConfigError: an `s3://` root without the `s3` extra installed.
        """
        url = settings.resolved_storage_url()
        options: dict[str, Any] = {}
        if url.startswith("s3://"):
            if importlib.util.find_spec("s3fs") is None:
                raise ConfigError([(VARIABLE, "s3:// needs the s3 extra: pip install 'lotlens[s3]'")])
            # Another process may write at any time: never answer from a cached listing.
            options["use_listings_cache"] = False
            if settings.s3_endpoint_url:
                options["endpoint_url"] = settings.s3_endpoint_url
            if settings.s3_region:
                options["client_kwargs"] = {"region_name": settings.s3_region}
            if settings.s3_access_key_id:
                options["key"] = settings.s3_access_key_id
            if settings.s3_secret_access_key is not None:
                options["secret"] = settings.s3_secret_access_key.get_secret_value()
        return cls(url, settings.resolved_cache_dir(), options)

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"  # never the options: they may hold a secret key

    # -- plumbing ---------------------------------------------------------------------------------

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of a remote root, built once per process."""
        if self._fs is None or self._pid != os.getpid():
            import fsspec

            self._fs = fsspec.filesystem(self.url.split("://", 1)[0], **self._options)
            self._pid = os.getpid()
        return self._fs

    def _path(self, rel: str) -> str:
        """The full path of `rel` (a local path, or the fsspec path `bucket/prefix/rel`)."""
        p = PurePosixPath(rel)
        if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel:
            raise StorageError(f"not a path inside the storage root: {rel!r}")
        if self.local:
            return str(Path(self.url) / p)
        return f"{self.url.split('://', 1)[1]}/{p}"

    def _rel(self, full: str) -> str:
        root = self._path("x")[:-1]
        return full[len(root) :] if full.startswith(root) else full

    @contextmanager
    def _errors(self, action: str, rel: str) -> Iterator[None]:
        """One `StorageError` naming the setting, the root and the path for whatever the disk or the
        client raised (never a credential: those are not in the root's URL)."""
        caught: tuple[type[BaseException], ...] = (OSError, *_remote_errors())
        try:
            yield
        except StorageError:
            raise
        except caught as exc:
            text = (str(exc).strip().splitlines() or [""])[0][:200]
            reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            raise StorageError(f"{VARIABLE} {self.url}: cannot {action} {rel}: {reason}") from exc

    # -- files --------------------------------------------------------------------------------------

    def put(self, rel: str, data: bytes) -> None:
        """Write a file (atomically on a local root: it appears whole or not at all)."""
        full = self._path(rel)
        with self._errors("write", rel):
            if not self.local:
                self.fs.pipe_file(full, data)
                return
            target = Path(full)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def put_many(self, files: Mapping[str, bytes]) -> None:
        """Write several files; on a remote root, concurrently."""
        if not files:
            return
        if self.local:
            for rel, data in files.items():
                self.put(rel, data)
            return
        paths = {self._path(rel): data for rel, data in files.items()}
        with self._errors("write", f"{len(files)} files under {min(files)}"):
            self.fs.pipe(paths)

    def get(self, rel: str) -> bytes | None:
        """A file's bytes, or None when there is no such file."""
        full = self._path(rel)
        with self._errors("read", rel):
            try:
                if self.local:
                    return Path(full).read_bytes()
                return bytes(self.fs.cat_file(full))
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None

    def exists(self, rel: str) -> bool:
        full = self._path(rel)
        with self._errors("look up", rel):
            return Path(full).exists() if self.local else bool(self.fs.exists(full))

    def files(self, prefix: str) -> list[str]:
        """The files under `prefix` (at any depth), as sorted paths relative to the root; none when
        the prefix does not exist. Files of a local folder still being written are left out."""
        full = self._path(prefix)
        with self._errors("list", prefix):
            if self.local:
                root = Path(self.url)
                found = [p for p in Path(full).rglob("*") if p.is_file()]
                rels = (p.relative_to(root).as_posix() for p in found)
                return sorted(r for r in rels if not any(part.startswith(".partial") for part in r.split("/")))
            try:
                return sorted(self._rel(p) for p in self.fs.find(full))
            except FileNotFoundError:
                return []

    def stat_files(self, prefix: str) -> dict[str, tuple[int, datetime]]:
        """The files under `prefix` with their size and last-modified time, by path relative to the
        root; none when the prefix does not exist (for retention, which needs both)."""
        full = self._path(prefix)
        with self._errors("list", prefix):
            if self.local:
                root = Path(self.url)
                found: dict[str, tuple[int, datetime]] = {}
                for p in Path(full).rglob("*"):
                    rel = p.relative_to(root).as_posix()
                    if any(part.startswith(".partial") for part in rel.split("/")) or not p.is_file():
                        continue
                    st = p.stat()
                    found[rel] = (st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
                return found
            try:
                infos = self.fs.find(full, detail=True)
            except FileNotFoundError:
                return {}
            return {self._rel(path): (int(i.get("size") or 0), _modified(i)) for path, i in infos.items()}

    def delete(self, rel: str) -> None:
        """Remove a file or a folder with everything under it; nothing when it is not there."""
        full = self._path(rel)
        with self._errors("delete", rel):
            if self.local:
                p = Path(full)
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
                return
            if self.fs.exists(full):
                self.fs.rm(full, recursive=True)

    # -- folders ------------------------------------------------------------------------------------

    def has_folder(self, rel: str) -> bool:
        """Whether a complete folder is at `rel` (remote: its index is there; local: it is there,
        since a local folder appears whole by a rename)."""
        if self.local:
            with self._errors("look up", rel):
                return Path(self._path(rel)).is_dir()
        return self.exists(f"{rel}/{INDEX}")

    def folders(self, prefix: str) -> list[str]:
        """The names of the complete folders directly under `prefix`, sorted."""
        full = self._path(prefix)
        with self._errors("list", prefix):
            if self.local:
                p = Path(full)
                if not p.is_dir():
                    return []
                return sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
            return sorted(PurePosixPath(p).parent.name for p in self.fs.glob(f"{full}/*/{INDEX}"))

    def put_folder(self, rel: str, source: Path | Mapping[str, bytes]) -> bool:
        """Store a folder (a local folder's files, or names and bytes) at `rel`, with its index
        written last; False, writing nothing, when a complete folder is already there (stored
        folders never change)."""
        items: dict[str, Path | bytes]
        if isinstance(source, Path):
            items = {p.relative_to(source).as_posix(): p for p in sorted(source.rglob("*")) if p.is_file()}
        else:
            items = dict(source)
        items.pop(INDEX, None)
        hashes = {
            name: sha256_file(v) if isinstance(v, Path) else hashlib.sha256(v).hexdigest() for name, v in items.items()
        }
        if self.has_folder(rel):
            return False
        if self.local:
            return self._put_local_folder(rel, items, hashes)
        base = self._path(rel)
        with self._errors("write", rel):
            blobs = {f"{base}/{n}": v for n, v in items.items() if isinstance(v, bytes)}
            files = [(str(v), f"{base}/{n}") for n, v in items.items() if isinstance(v, Path)]
            if blobs:
                self.fs.pipe(blobs)
            if files:
                self.fs.put([s for s, _ in files], [d for _, d in files])
            self.fs.pipe_file(f"{base}/{INDEX}", index_bytes(hashes))
        return True

    def _put_local_folder(self, rel: str, items: Mapping[str, Path | bytes], hashes: Mapping[str, str]) -> bool:
        target = Path(self._path(rel))
        with self._errors("write", rel):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
            try:
                for name, v in items.items():
                    dest = tmp / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if isinstance(v, Path):
                        shutil.copyfile(v, dest)
                    else:
                        dest.write_bytes(v)
                (tmp / INDEX).write_bytes(index_bytes(hashes))
                tmp.chmod(0o755)  # mkdtemp makes it private; the folder it becomes is not
                try:
                    tmp.rename(target)  # a folder appears whole or not at all
                except OSError:
                    if not target.is_dir():
                        raise
                    return False  # another process stored it first
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return True

    def local_folder(self, rel: str) -> Path:
        """A folder on the local disk holding the stored folder `rel`: the folder itself on a local
        root; on a remote root, a copy in the cache named by `rel` and its index's hash (so a changed
        folder never reuses a stale copy), downloaded and checked against the index on first use.

        An absolute `rel` is a path the registry recorded before the storage root existed
        (`<data_dir>/models/<version>`): read from the root as `models/<version>` when stored
        there, else from where it was.

        Raises:
            StorageError: no complete folder there, or a file that does not match its index.
        """
        if os.path.isabs(rel):
            legacy = Path(rel)
            moved = f"{legacy.parent.name}/{legacy.name}"
            if self.has_folder(moved):
                rel = moved
            elif legacy.is_dir():
                return legacy
            else:
                raise StorageError(f"{VARIABLE} {self.url}: no folder {moved} (recorded as {rel})")
        if self.local:
            path = Path(self._path(rel))
            if not path.is_dir():
                raise StorageError(f"{VARIABLE} {self.url}: no folder {rel}")
            return path
        index = self.get(f"{rel}/{INDEX}")
        if index is None:
            raise StorageError(f"{VARIABLE} {self.url}: no complete folder {rel} (no {INDEX})")
        hashes = {}
        for line in index.decode(errors="replace").splitlines():
            digest, _, name = line.partition("  ")
            hashes[name] = digest
        target = self.cache_dir / f"{rel}-{hashlib.sha256(index).hexdigest()[:16]}"
        if target.is_dir():
            with suppress(OSError):
                os.utime(target)  # in use: `lotlens cache prune` keeps copies used lately
            return target
        with self._errors("copy into the cache", rel):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
            try:
                names = sorted(hashes)
                for name in names:
                    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                base = self._path(rel)
                self.fs.get([f"{base}/{n}" for n in names], [str(tmp / n) for n in names])
                for name in names:
                    if sha256_file(tmp / name) != hashes[name]:
                        raise StorageError(f"{VARIABLE} {self.url}: {rel}/{name} does not match its {INDEX}")
                (tmp / INDEX).write_bytes(index)
                tmp.chmod(0o755)
                try:
                    tmp.rename(target)
                except OSError:
                    if not target.is_dir():
                        raise  # else another process of this host copied it first
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("copied %s from the storage root into %s", rel, target)
        return target

    def mirror(self, rels: Iterable[str]) -> Path:
        """A local folder where each of `rels` that is stored lies under its own relative path: the
        root itself when it is local, else the cache's mirror, filled with what it lacks. Only for
        files that never change (content-addressed images, dataset versions)."""
        if self.local:
            return Path(self.url)
        root = self.cache_dir / "mirror"
        missing = [r for r in dict.fromkeys(rels) if not (root / r).is_file()]
        for rel in missing:
            self._path(rel)  # refuse a path outside the root before writing anything
        for i in range(0, len(missing), 500):
            self._mirror_some(root, missing[i : i + 500])
        return root

    def _mirror_some(self, root: Path, rels: list[str]) -> None:
        tmp = Path(tempfile.mkdtemp(dir=self._ensure(root), prefix=".partial-"))
        try:
            with self._errors("copy into the cache", f"{len(rels)} files under {min(rels)}"):
                try:
                    self.fs.get([self._path(r) for r in rels], [str(tmp / str(i)) for i in range(len(rels))])
                    got = list(enumerate(rels))
                except FileNotFoundError:  # one of them is not stored: take the others one by one
                    got = []
                    for i, r in enumerate(rels):
                        try:
                            self.fs.get_file(self._path(r), str(tmp / str(i)))
                        except FileNotFoundError:
                            continue
                        got.append((i, r))
                for i, r in got:
                    dest = root / r
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp / str(i), dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _ensure(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return folder
