"""Recompute cached answers with the champion: never for a manually fixed image, resumable.

Work already done is what the store holds: an image with a prediction by the champion's version
is skipped, so an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from lotlens.config import Settings
from lotlens.errors import FetchError, ImageDecodeError
from lotlens.fetch import Fetcher
from lotlens.imaging import decode
from lotlens.keys import content_key
from lotlens.storage import Storage
from lotlens.store import Store
from lotlens.store.images import ImageFolder
from lotlens.vision import Pipeline


@dataclass
class ReclassifyReport:
    model_version: str
    images: int = 0
    reclassified: int = 0
    already_done: int = 0
    manual: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # image key -> reason


async def _bytes_of(settings: Settings, store: Store, folder: ImageFolder, key: str, fetcher: Fetcher) -> bytes:
    data = await asyncio.to_thread(folder.get, key)
    if data is not None:
        return data
    for _, url in store.sightings([key]).get(key, []):
        try:
            got = (await fetcher.get(url)).data
        except FetchError:
            continue
        if content_key(got) == key:
            folder.put(key, got)
            return got
    raise FetchError("unavailable", key)


def reclassify(
    settings: Settings,
    store: Store,
    pipeline: Pipeline,
    advertiser: str | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> ReclassifyReport:
    """Reclassify an advertiser's images (or all, when `advertiser` is None) with `pipeline`."""
    keys = store.inventory(advertiser) if advertiser else store.all_images()
    report = ReclassifyReport(pipeline.version, images=len(keys))
    manual = store.fixed_keys(keys)
    done = store.predicted_by(keys, pipeline.version)
    report.manual, report.already_done = len(manual), len(done - manual)
    todo = [k for k in keys if k not in manual and k not in done]
    folder = ImageFolder(Storage.from_settings(settings))

    async def run() -> None:
        async with Fetcher(settings) as fetcher:
            for start in range(0, len(todo), settings.batch_size):
                if on_step:
                    on_step(start, len(todo))
                chunk, images = [], []
                for k in todo[start : start + settings.batch_size]:
                    try:
                        data = await _bytes_of(settings, store, folder, k, fetcher)
                        images.append(decode(data, max_pixels=settings.max_pixels))
                        chunk.append(k)
                    except (FetchError, ImageDecodeError) as exc:
                        report.skipped[k] = exc.reason
                for k, p in zip(chunk, await asyncio.to_thread(pipeline.classify, images), strict=True):
                    store.put_prediction(k, p.model_version, p.type, p.color, p.stored_scores(), p.box)
                    report.reclassified += 1
        if on_step:
            on_step(len(todo), len(todo))

    asyncio.run(run())
    return report
