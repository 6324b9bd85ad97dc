"""Image bytes kept for datasets, addressed by content key under `images/` in the storage root."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store only passes the root through; `lotlens.storage` owns the I/O
    from lotlens.storage import Storage


class ImageFolder:
    """`images/<2 hex>/<64 hex>` files; a file is written once and never changed."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def relpath(content_key: str) -> str:
        """The file's path relative to the storage root (what dataset manifests record)."""
        digest = content_key.removeprefix("c:")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a content key: {content_key!r}")
        return f"images/{digest[:2]}/{digest}"

    def put(self, content_key: str, data: bytes) -> str:
        rel = self.relpath(content_key)
        if not self.storage.exists(rel):
            self.storage.put(rel, data)
        return rel

    def put_many(self, images: Mapping[str, bytes]) -> None:
        """Keep several images at once (concurrently on a remote root, where rewriting an existing
        file with the same bytes costs less than asking first)."""
        if self.storage.local:
            images = {k: data for k, data in images.items() if not self.exists(k)}
        self.storage.put_many({self.relpath(k): data for k, data in images.items()})

    def keys(self) -> dict[str, tuple[int, datetime]]:
        """Every kept image: content key -> (size in bytes, when it was written)."""
        found = {}
        for rel, stat in self.storage.stat_files("images").items():
            name = rel.rsplit("/", 1)[-1]
            if len(name) == 64 and rel.count("/") == 2:
                found["c:" + name] = stat
        return found

    def remove(self, content_key: str) -> None:
        """Delete an image's bytes (nothing when they are not kept)."""
        self.storage.delete(self.relpath(content_key))

    def get(self, content_key: str) -> bytes | None:
        return self.storage.get(self.relpath(content_key))

    def exists(self, content_key: str) -> bool:
        return self.storage.exists(self.relpath(content_key))
