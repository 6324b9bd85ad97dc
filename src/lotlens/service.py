"""One batch end to end: header keys -> lookup -> fetch misses -> content keys -> lookup again ->
decode and classify the rest -> store -> answers in input order.

Nothing an image does fails the batch: a bad URL, a dead CDN, a corrupt file or a model error makes
that one image `skipped` with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lotlens.config import Settings
from lotlens.errors import FetchError, ImageDecodeError
from lotlens.fetch import Fetched, Fetcher
from lotlens.imaging import decode
from lotlens.keys import content_key, hamming, header_key, normalise_url, perceptual_hash
from lotlens.labels import PLACEHOLDER, scraped_color
from lotlens.store import Answer, Store
from lotlens.store.images import ImageFolder
from lotlens.vision import Pipeline

log = logging.getLogger(__name__)


MAX_URL = 8192
MAX_VEHICLE_ID = 128


@dataclass(frozen=True)
class Item:
    """One image of a request; `color` is the color the scrape says (a palette color or synonym is
    answered as is; any other value is kept beside the answer and the model predicts)."""

    url: str
    vehicle_id: str | None = None
    color: str | None = None

    def __post_init__(self) -> None:
        if self.vehicle_id is not None:  # an odd vehicle id is stored cleaned, never a failed batch
            object.__setattr__(self, "vehicle_id", printable(self.vehicle_id, MAX_VEHICLE_ID) or None)

    @property
    def known_color(self) -> str | None:
        return scraped_color(self.color)


@dataclass
class Result:
    """One image's answer, in the order of the request."""

    url: str
    status: str = "ok"  # "ok" | "skipped"
    reason: str | None = None
    image_key: str | None = None
    type: str | None = None
    color: str | None = None
    source: str | None = None  # "model" | "cache" | "manual"
    scores: dict[str, Any] = field(default_factory=lambda: {"type": {}, "color": {}})
    model_version: str | None = None
    near_duplicate_of: str | None = None
    scraped_color: str | None = None  # the color the scrape gave, as given

    def skip(self, reason: str) -> Result:
        self.status, self.reason = "skipped", reason
        return self


def printable(text: str, limit: int) -> str:
    """`text` without control characters (PostgreSQL refuses NUL), cut to `limit` characters."""
    return "".join(c for c in text[: limit * 2] if c >= " " and c != "\x7f")[:limit]


def _internal(result: Result, exc: BaseException, what: str) -> None:
    """An error no image should cause (a bug, or a library raising what it should not): logged
    with its traceback, and that one image skipped, never the batch."""
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, CancelledError, SystemExit: not the image's doing
    log.error("%s of %s failed unexpectedly", what, result.url[:200], exc_info=exc)
    result.skip(f"internal_error: {type(exc).__name__}")


@dataclass
class BatchStats:
    """What one batch cost: the figures `/metrics` and the benchmark read."""

    header_hits: int = 0
    content_hits: int = 0
    near_duplicates: int = 0
    heads: int = 0
    gets: int = 0
    classified: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    verified: int = 0
    header_key_mismatches: int = 0
    fetch_seconds: float = 0.0
    inference_seconds: float = 0.0
    hosts_distrusted: list[str] = field(default_factory=list)


class Service:
    """Classifies batches for advertisers through the cache.

    Args:
        settings: limits, the pHash distance and per-advertiser key modes.
        store: the cache and fix repository.
        pipeline: a callable returning the current model (so a new champion is taken up per batch).
        fetcher: a factory of `Fetcher`s (tests pass one with a mock transport).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        pipeline: Callable[[], Pipeline],
        fetcher: Callable[[], Fetcher] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._pipeline = pipeline
        self._fetcher = fetcher or (lambda: Fetcher(settings))
        self.images = ImageFolder(settings.data_dir) if settings.keep_images else None
        self.last_stats = BatchStats()
        self._rng = random.Random()

    async def classify(self, advertiser: str, items: Sequence[Item]) -> list[Result]:
        """Answer every item, in order (the batch's figures land in `last_stats`)."""
        results, self.last_stats = await self.classify_with_stats(advertiser, items)
        return results

    async def classify_with_stats(self, advertiser: str, items: Sequence[Item]) -> tuple[list[Result], BatchStats]:
        """Answer every item, in order, with this batch's own figures (safe for concurrent batches)."""
        stats = BatchStats()
        pipeline = self._pipeline()  # the batch finishes on the model it started with
        results = [Result(it.url, scraped_color=it.color) for it in items]
        urls: dict[int, str] = {}  # the normalised URL: keys and the inventory
        given: dict[int, str] = {}  # the URL as given: what is fetched (signed URLs break when re-encoded)
        for i, it in enumerate(items):
            try:
                if len(it.url) > MAX_URL or "\0" in it.url:
                    raise ValueError("too long or has a NUL")
                urls[i] = normalise_url(it.url)
                given[i] = it.url.strip()
            except ValueError:
                results[i].skip("bad_url")
        mode = self.settings.key_modes.get(advertiser, "auto")
        async with self._fetcher() as fetcher:
            # 1. Header keys, for hosts whose headers we trust.
            hkeys: dict[int, str] = {}
            if mode != "content":
                hosts = {urlsplit(u).hostname or "" for u in urls.values()}
                trusted = self.store.trusted_hosts(hosts)
                want = [i for i, u in urls.items() if mode == "header" or (urlsplit(u).hostname or "") in trusted]
                heads = await asyncio.gather(*(fetcher.head(given[i]) for i in want), return_exceptions=True)
                stats.heads += len(want)
                for i, h in zip(want, heads, strict=True):
                    if isinstance(h, Fetched):
                        k = header_key(h.url, h.headers)
                        if k:
                            hkeys[i] = k
                    elif isinstance(h, FetchError) and h.reason in (
                        "http_404",
                        "http_410",
                        "blocked_address",
                        "dns",
                        "bad_url",
                    ):
                        results[i].skip(h.reason)  # a GET would fail the same way
                    elif not isinstance(h, FetchError):
                        _internal(results[i], h, "HEAD")
            # 2. One batched lookup by header key.
            known = self.store.lookup_header_keys(hkeys.values())
            ckeys: dict[int, str] = {i: known[k] for i, k in hkeys.items() if k in known}
            answers = self.store.answers(set(ckeys.values()), advertiser)
            done = {i for i, k in ckeys.items() if k in answers}
            stats.header_hits += len(done)
            # 3. Fetch the misses, and a random sample of the hits: a CDN that keeps a strong ETag while
            #    the bytes change is caught only by looking at the bytes.
            verify = {i for i in sorted(done) if self._rng.random() < self.settings.verify_fraction}
            todo = [i for i in urls if (i not in done or i in verify) and results[i].status == "ok"]
            t0 = time.perf_counter()
            got = await asyncio.gather(*(fetcher.get(given[i]) for i in todo), return_exceptions=True)
            stats.fetch_seconds = time.perf_counter() - t0
            stats.gets += len(todo)
        fetched: dict[int, Fetched] = {}
        for i, g in zip(todo, got, strict=True):
            if i in verify and isinstance(g, Fetched):
                if content_key(g.data) == ckeys[i]:
                    stats.verified += 1
                    continue  # the header key told the truth: the cached answer stands
                done.discard(i)  # it did not: a miss, and the host is distrusted below
                stats.header_hits -= 1
                stats.header_key_mismatches += 1
            elif i in verify:
                continue  # a failed check proves nothing: the cached answer stands
            if isinstance(g, Fetched):
                fetched[i] = g
            elif isinstance(g, FetchError):
                results[i].skip(g.reason)
            else:
                _internal(results[i], g, "GET")
        # 4. Content keys.
        for i, f in fetched.items():
            ckeys[i] = content_key(f.data)
        # 5. Second lookup: same bytes under a new URL or new headers are still a hit.
        answers |= self.store.answers({ckeys[i] for i in fetched}, advertiser)
        hits = {i for i in fetched if ckeys[i] in answers}
        stats.content_hits += len(hits)
        # 6. Decode and classify the rest.
        new = [i for i in fetched if i not in hits]
        first: dict[str, int] = {}  # the same bytes twice in one batch are decoded and classified once
        for i in new:
            first.setdefault(ckeys[i], i)
        images: dict[int, Any] = {}
        for i in first.values():
            try:
                images[i] = decode(fetched[i].data, max_pixels=self.settings.max_pixels)
            except ImageDecodeError as exc:
                results[i].skip(exc.reason)
        failed, near = await self._classify_new(pipeline, advertiser, items, images, fetched, ckeys, stats)
        for i in new:
            j = first[ckeys[i]]
            why = results[j].reason if results[j].status == "skipped" else failed.get(j)
            if why:
                results[i].skip(why)
        fresh = {ckeys[i] for i in images if i not in failed}
        answers |= self.store.answers(fresh, advertiser)
        # 7. Record the inventory, learn about hosts from header keys, and answer.
        answered = [i for i, k in ckeys.items() if results[i].status == "ok" and k in answers]
        for i in answered:
            r, k = results[i], ckeys[i]
            hk = header_key(fetched[i].url, fetched[i].headers) if i in fetched and mode != "content" else None
            if hk:
                self._learn(urls[i], hk, k, stats)
            self._fill(r, k, answers[k], items[i], "model" if k in fresh else "cache", near.get(k))
        self.store.see_many(advertiser, [(urls[i], ckeys[i], items[i].vehicle_id, results[i].source) for i in answered])
        self.store.skip_many(
            advertiser,
            [
                (urls.get(i) or printable(it.url, MAX_URL), results[i].reason or "unknown", it.vehicle_id)
                for i, it in enumerate(items)
                if results[i].status == "skipped"
            ],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for r in results:
            if r.status == "skipped":
                stats.skipped[r.reason or "unknown"] = stats.skipped.get(r.reason or "unknown", 0) + 1
            elif r.type and r.source:
                key = (r.model_version or "manual", r.type, r.source)
                counts[key] = counts.get(key, 0) + 1
        self.store.count_answers(advertiser, counts)
        return results, stats

    async def _classify_new(
        self,
        pipeline: Pipeline,
        advertiser: str,
        items: Sequence[Item],
        images: dict[int, Any],
        fetched: dict[int, Fetched],
        ckeys: dict[int, str],
        stats: BatchStats,
    ) -> tuple[dict[int, str], dict[str, tuple[str, dict[str, Any]]]]:
        """Classify and store new images; return (failed index -> reason, key -> near-duplicate fix)."""
        order = list(images)
        fixed = self.store.fixed_phashes(advertiser) if order else []
        failed: dict[int, str] = {}
        near: dict[str, tuple[str, dict[str, Any]]] = {}
        for start in range(0, len(order), self.settings.batch_size):
            chunk = order[start : start + self.settings.batch_size]
            with_color = [items[i].known_color is None for i in chunk]
            t0 = time.perf_counter()
            try:
                preds = await asyncio.to_thread(pipeline.classify, [images[i] for i in chunk], with_color)
                stats.inference_seconds += time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 -- a model failure skips these images, never the batch
                log.exception("model error on %d images", len(chunk))
                failed |= dict.fromkeys(chunk, f"model_error: {type(exc).__name__}")
                continue
            for i, p in zip(chunk, preds, strict=True):
                k = ckeys[i]
                im = images[i]
                ph = perceptual_hash(im)
                self.store.put_image(k, ph, im.shape[1], im.shape[0], len(fetched[i].data))
                if self.images is not None:
                    await asyncio.to_thread(self.images.put, k, fetched[i].data)
                self.store.put_prediction(k, p.model_version, p.type, p.color, p.stored_scores(), p.box)
                stats.classified += 1
                original = self._near_fixed(ph, k, fixed)
                src = self.store.answers([original], advertiser).get(original) if original else None
                if original and src is not None:
                    near[k] = (original, {f: getattr(src, f) for f in src.manual})
                    stats.near_duplicates += 1
        return failed, near

    def _near_fixed(self, phash: int, key: str, fixed: list[tuple[str, int]]) -> str | None:
        best = None
        for k, h in fixed:
            d = hamming(phash, h)
            if k != key and d <= self.settings.phash_distance and (best is None or d < best[0]):
                best = (d, k)
        return best[1] if best else None

    @staticmethod
    def _fill(r: Result, key: str, a: Answer, item: Item, source: str, near: tuple[str, dict[str, Any]] | None) -> None:
        """The answer for one item; a near-duplicate of a fixed image takes that image's fixed fields."""
        r.image_key = key
        r.type, r.color, r.model_version = a.type, a.color, a.model_version
        r.scores = {"type": a.scores.get("type", {}), "color": a.scores.get("color", {})}
        r.source = "manual" if a.manual else source
        if near and not a.manual:
            r.near_duplicate_of = near[0]
            for f, v in near[1].items():
                setattr(r, f, v)
            r.source = "manual"
        known_color = item.known_color
        if known_color and "color" not in a.manual:
            r.color = known_color
        if r.type == PLACEHOLDER:
            r.color = None

    def _learn(self, url: str, hkey: str, ckey: str, stats: BatchStats) -> None:
        """Distrust a host whose header key maps to new bytes, or whose bytes come under a new key."""
        host = urlsplit(url).hostname or ""
        before = self.store.remember_header_key(hkey, ckey, host, url)
        changed = self.store.other_header_key(url, hkey, ckey)
        why = None
        if before is not None:
            why = "a header key served different bytes"
        elif changed:
            why = "the header key changed while the bytes did not"
        if why and self.store.distrust_host(host, why):
            log.warning("host %s untrusted: %s; content keys only from now on", host, why)
            stats.hosts_distrusted.append(host)
