"""Image bytes kept for datasets, addressed by content key under `<data_dir>/images/`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


class ImageFolder:
    """`images/<2 hex>/<64 hex>` files; a file is written once, atomically, and never changed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def relpath(self, content_key: str) -> str:
        digest = content_key.removeprefix("c:")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a content key: {content_key!r}")
        return f"images/{digest[:2]}/{digest}"

    def path(self, content_key: str) -> Path:
        return self.root / self.relpath(content_key)

    def put(self, content_key: str, data: bytes) -> Path:
        target = self.path(content_key)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        return target

    def keys(self) -> Iterator[tuple[str, Path]]:
        """Every kept image as (content key, file), in no particular order."""
        for path in (self.root / "images").glob("??/*"):
            if len(path.name) == 64 and not path.name.startswith("."):
                yield "c:" + path.name, path

    def remove(self, content_key: str) -> int:
        """Delete an image's bytes; returns the bytes freed (0 when it was not kept)."""
        path = self.path(content_key)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def get(self, content_key: str) -> bytes | None:
        try:
            return self.path(content_key).read_bytes()
        except FileNotFoundError:
            return None
