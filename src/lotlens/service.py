"""One batch end to end, as named stages over one `Work` object per image. Kept whole (about 600
lines): the stages of a batch read top to bottom in one place, each a method of `Batch`.

    parse -> header keys (URL index; conditional GET, or the URL alone) -> lookup -> fetch misses
          -> content keys -> lookup again
          -> decode -> classify -> store -> record the inventory -> answers in input order

Downloads, decoding and inference overlap: fetched images queue for a consumer that takes them in
groups of up to `batch_size` (waiting a few milliseconds for a group to fill, as dynamic batchers
do), decodes them in a pool under a memory budget, and classifies each group in one model call;
up to `GROUPS_IN_FLIGHT` groups at once, so one decodes while another is classified or stored.
Nothing blocking runs on the event loop: store calls, hashing, decoding and inference go to threads.

Nothing an image does fails the batch: a bad URL, a dead CDN, a corrupt file or a model error makes
that one image `skipped` with a reason, and so does the batch deadline for what it leaves undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from lotlens.batching import INFERENCE_CALLS, Batcher
from lotlens.config import Settings
from lotlens.errors import FetchError, ImageDecodeError, StorageError
from lotlens.fetch import Fetched, Fetcher
from lotlens.imaging import MemoryBudget, RGBArray, decode
from lotlens.keys import content_key, hamming, header_key, normalise_url, perceptual_hash, strong_etag
from lotlens.labels import PLACEHOLDER, scraped_color
from lotlens.storage import Storage
from lotlens.store import Answer, Store
from lotlens.store.images import ImageFolder
from lotlens.store.records import HostTrust, UrlRecord, UrlSeen
from lotlens.store.review import ReviewQueue, VehicleDoubt
from lotlens.vision import Pipeline
from lotlens.vision.vehicle import doubtful, vehicle_color

log = logging.getLogger(__name__)

MAX_URL = 8192
MAX_VEHICLE_ID = 128
GROUP_WAIT = 0.02  # seconds the classifier waits for a group to fill once it has one image
GROUPS_IN_FLIGHT = 3  # groups of one batch between content keys and store at once (decode, model, store)


def printable(text: str, limit: int) -> str:
    """`text` without control characters (PostgreSQL refuses NUL) or lone surrogates, cut to `limit`."""
    return "".join(c for c in text[: limit * 2] if c >= " " and c != "\x7f" and not 0xD800 <= ord(c) <= 0xDFFF)[:limit]


def _utf8(text: str) -> str:
    """`text` as is, unless it cannot be written as UTF-8 (a lone surrogate): then with `?` there."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


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
    color_confident: bool | None = None  # the color's score reaches LOTLENS_LOW_CONFIDENCE (a fix: True)
    vehicle_color: str | None = None  # the vote of the vehicle's photos (same advertiser and vehicle id)
    vehicle_color_confidence: float | None = None

    def skip(self, reason: str) -> Result:
        self.status, self.reason = "skipped", reason
        return self


@dataclass
class BatchStats:
    """What one batch cost: the figures `/metrics` and the benchmark read."""

    url_hits: int = 0  # answered from the URL alone: no request (a host with URL trust)
    header_hits: int = 0  # a 304 to a conditional GET (or a verification of a known URL)
    content_hits: int = 0
    near_duplicates: int = 0
    heads: int = 0
    conditional_gets: int = 0
    not_modified: int = 0
    gets: int = 0
    classified: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    verified: int = 0
    header_key_mismatches: int = 0
    fetch_seconds: float = 0.0
    inference_seconds: float = 0.0  # summed over the batch's groups, which overlap: can exceed its wall time
    hosts_distrusted: list[str] = field(default_factory=list)
    url_trust_earned: list[str] = field(default_factory=list)
    url_trust_lost: list[str] = field(default_factory=list)


@dataclass
class Work:
    """One image as it moves through the stages of a batch."""

    item: Item
    result: Result
    url: str | None = None  # normalised: keys and the inventory
    given: str | None = None  # as given: what is fetched (signed URLs break when re-encoded)
    host: str = ""
    known: UrlRecord | None = None  # what the URL index held for this URL when the batch began
    by_url: bool = False  # answered from the URL alone, no request
    not_modified: bool = False  # a conditional GET got 304: the bytes in `known` still hold
    content_key: str | None = None
    fetched: Fetched | None = None  # its bytes are dropped once stored
    cached: bool = False  # answered by a key the store knew before this batch
    verify: bool = False  # a header-key hit fetched anyway, to check the CDN
    leader: Work | None = None  # the same bytes earlier in this batch: that one is classified

    @property
    def ok(self) -> bool:
        return self.result.status == "ok"


def _internal(result: Result, exc: BaseException, what: str) -> None:
    """An error no image should cause (a bug, or a library raising what it should not): logged
    with its traceback, and that one image skipped, never the batch."""
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, CancelledError, SystemExit: not the image's doing
    log.error("%s of %s failed unexpectedly", what, result.url[:200], exc_info=exc)
    result.skip(f"internal_error: {type(exc).__name__}")


class Service:
    """Classifies batches for advertisers through the cache.

    Args:
        settings: limits, the pHash distance, per-advertiser key modes, the decode memory budget.
        store: the cache and fix repository.
        pipeline: a callable returning the current model (so a new champion is taken up per batch).
        fetcher: a factory of `Fetcher`s (tests pass one that lets a test address through).
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
        self._fetcher = fetcher or (lambda: Fetcher(self.settings))
        self.images = ImageFolder(Storage.from_settings(settings)) if settings.keep_images else None
        self.decode_budget = MemoryBudget(settings.decode_memory)
        # Inference batched across concurrent batches of this process, `INFERENCE_CALLS` calls at once.
        # A call takes at most one group's worth: two full groups waiting go out as two calls, one per
        # core, not one merged call leaving the other core idle (a cold 120-image batch: 2.53 s
        # against 2.67 s with calls of up to two groups, medians of 6 turns each, one process).
        self.batcher = Batcher(max_batch=settings.batch_size, max_wait=GROUP_WAIT, parallel=INFERENCE_CALLS)
        self.decoders = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="lotlens-decode")
        self.last_stats = BatchStats()
        self.rng = random.Random()
        self._resident: tuple[asyncio.AbstractEventLoop, Fetcher] | None = None

    async def __aenter__(self) -> Service:
        """Hold one HTTP client for every batch run on this event loop (the server's), so that its
        connections stay alive from batch to batch; `async with service:` around the loop's life."""
        self._resident = (asyncio.get_running_loop(), self._fetcher())
        return self

    async def __aexit__(self, *exc: object) -> None:
        resident, self._resident = self._resident, None
        if resident is not None:
            await resident[1].aclose()

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Fetcher]:
        """The client this loop holds (`async with service`), else one for this batch alone (a job
        chunk or the CLI, which run a loop per call)."""
        resident = self._resident
        if resident is not None and resident[0] is asyncio.get_running_loop():
            yield resident[1]
            return
        async with self._fetcher() as fetcher:
            yield fetcher

    async def classify(self, advertiser: str, items: Sequence[Item], deadline: float | None = None) -> list[Result]:
        """Answer every item, in order (the batch's figures land in `last_stats`)."""
        results, self.last_stats = await self.classify_with_stats(advertiser, items, deadline)
        return results

    async def classify_with_stats(
        self, advertiser: str, items: Sequence[Item], deadline: float | None = None
    ) -> tuple[list[Result], BatchStats]:
        """Answer every item, in order, with this batch's own figures (safe for concurrent batches).

        Args:
            deadline: seconds; what is not answered by then is skipped with reason `deadline`.
        """
        # The model this batch finishes on; in a thread, as the first call of a process loads it.
        pipeline = await asyncio.to_thread(self._pipeline)
        return await Batch(self, advertiser, items, deadline, pipeline).run()


class Batch:
    """One call of `Service.classify_with_stats`; each stage is a method."""

    def __init__(
        self, service: Service, advertiser: str, items: Sequence[Item], deadline: float | None, pipeline: Pipeline
    ) -> None:
        self.service = service
        self.store = service.store
        self.settings = service.settings
        self.advertiser = advertiser
        self.pipeline = pipeline  # the batch finishes on the model it started with
        self.mode = self.settings.key_modes.get(advertiser, "auto")
        self.work = [
            Work(it, Result(_utf8(it.url), scraped_color=_utf8(it.color) if it.color else None)) for it in items
        ]
        self.stats = BatchStats()
        self.deadline = deadline
        self.answers: dict[str, Answer] = {}
        self.first: dict[str, Work] = {}  # content key -> the work item classified for it in this batch
        self.fresh: set[str] = set()  # content keys this batch classified
        self.failed: dict[str, str] = {}  # content key -> why it could not be classified
        self.near: dict[str, tuple[str, dict[str, Any]]] = {}  # content key -> (fixed original, its fields)
        self._fixed: list[tuple[str, int]] | None = None
        self._storing = asyncio.Lock()

    async def run(self) -> tuple[list[Result], BatchStats]:
        self.parse()
        async with self.service.client() as fetcher:
            with contextlib.suppress(TimeoutError):
                async with self._within_deadline():
                    await self.header_keys(fetcher)
                    await self.lookup()
                    await self.fetch_and_classify(fetcher)
        await self.record()
        return [w.result for w in self.work], self.stats

    @contextlib.asynccontextmanager
    async def _within_deadline(self) -> AsyncIterator[None]:
        if self.deadline is None:
            yield
            return
        async with asyncio.timeout(self.deadline):
            yield

    # -- stages -----------------------------------------------------------------------------------

    def parse(self) -> None:
        """Normalise each URL for its keys; one that cannot be fetched is skipped as `bad_url`."""
        for w in self.work:
            url = w.item.url
            try:
                if len(url) > MAX_URL or "\0" in url:
                    raise ValueError("too long or has a NUL")
                w.url, w.given = normalise_url(url), url.strip()
                w.host = urlsplit(w.url).hostname or ""
            except ValueError:  # UnicodeError among them
                w.result.skip("bad_url")

    async def header_keys(self, fetcher: Fetcher) -> None:
        """What each URL served last (the URL index, a query per 1,000 URLs), then no request where
        the host has URL trust, a conditional GET where its headers are trusted (304: the same bytes).

        A random `verify_fraction` of both is fetched whole instead and its bytes compared (in
        `classify_group`). New URLs wait for the GET of the misses: a HEAD would not find them.
        """
        if self.mode == "content":
            return
        todo = [w for w in self.work if w.ok]
        known, trust = await asyncio.to_thread(self._known, todo)
        rng, share = self.service.rng, self.settings.verify_fraction
        conditional = []
        for w in todo:
            rec = w.known = known.get(w.url or "")
            if rec is None:
                continue
            host = trust.get(w.host, HostTrust())
            if host.urls or ((host.headers or self.mode == "header") and rec.header_key):
                w.content_key = rec.content_key
                if rng.random() < share:
                    w.verify = True  # fetched whole: the bytes must match the stored key
                elif host.urls:
                    w.by_url = True
                else:
                    conditional.append(w)
        replies = await asyncio.gather(
            *(fetcher.get(w.given or "", w.known.etag, w.known.last_modified) for w in conditional if w.known),
            return_exceptions=True,
        )
        self.stats.conditional_gets += len(conditional)
        for w, r in zip(conditional, replies, strict=True):
            if isinstance(r, Fetched):
                if r.status == 304:
                    w.not_modified = True
                    self.stats.not_modified += 1
                else:  # new bytes (or a server that ignores validators): this was the GET of a miss
                    w.fetched, w.content_key = r, None
            elif isinstance(r, FetchError):
                w.result.skip(r.reason)
            else:
                _internal(w.result, r, "GET")

    def _known(self, todo: list[Work]) -> tuple[dict[str, UrlRecord], dict[str, HostTrust]]:
        """The URL index's rows and the hosts' trust for a batch (a thread)."""
        return self.store.lookup_urls(w.url or "" for w in todo), self.store.host_trust(w.host for w in todo)

    async def lookup(self) -> None:
        """The stored answers of the content keys the URL index gave; a hit needs nothing more."""
        keyed = [w for w in self.work if w.ok and w.content_key and w.fetched is None]
        if not keyed:
            return
        keys = {w.content_key or "" for w in keyed}
        self.answers |= await asyncio.to_thread(self.store.answers, keys, self.advertiser)
        for w in keyed:
            if w.content_key in self.answers:
                w.cached = True
                if w.by_url:
                    self.stats.url_hits += 1
                else:
                    self.stats.header_hits += 1
            else:  # no answer under that key (it could not be classified): fetched and tried again
                w.content_key, w.by_url, w.verify, w.not_modified = None, False, False, False

    async def fetch_and_classify(self, fetcher: Fetcher) -> None:
        """GET the misses (and the checks); a consumer classifies them in groups as they arrive."""
        todo = [w for w in self.work if w.ok and (not w.cached or w.verify)]
        self.stats.gets += len(todo)
        if not todo:
            return
        arrived: asyncio.Queue[Work | None] = asyncio.Queue(maxsize=2 * self.settings.batch_size)
        t0 = time.perf_counter()

        # Fetched bytes wait for the classifier: at most `fetch_concurrency` images between the
        # network and the queue, so a batch of 1,000 never holds 1,000 images' bytes at once.
        ahead = asyncio.Semaphore(self.settings.fetch_concurrency)

        async def get(w: Work) -> None:
            async with ahead:
                try:
                    if w.fetched is None:  # a conditional GET that got new bytes has them already
                        w.fetched = await fetcher.get(w.given or "")
                except FetchError as exc:
                    if not w.verify:
                        w.result.skip(exc.reason)
                    return  # a failed check proves nothing: the cached answer stands
                except Exception as exc:  # noqa: BLE001 -- one image's surprise, never the batch's
                    _internal(w.result, exc, "GET")
                    return
                await arrived.put(w)

        async def produce() -> None:
            try:
                await asyncio.gather(*(get(w) for w in todo))
            finally:
                self.stats.fetch_seconds = time.perf_counter() - t0
                await arrived.put(None)

        # Groups overlap: one decodes while the one before it is classified and the one before that
        # is stored, so the cores are not idle between model calls.
        slots = asyncio.Semaphore(GROUPS_IN_FLIGHT)

        async def classify(group: list[Work]) -> None:
            try:
                await self.classify_group(group)
            finally:
                slots.release()

        producer = asyncio.create_task(produce())
        groups: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                group = await self._next_group(arrived)
                if group is None:
                    break
                task = asyncio.create_task(classify(group))
                groups.add(task)
                task.add_done_callback(groups.discard)
            if groups:
                await asyncio.gather(*groups)
        finally:
            pending = [producer, *groups]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)  # their errors are raised above, if any

    async def _next_group(self, arrived: asyncio.Queue[Work | None]) -> list[Work] | None:
        """Up to `batch_size` fetched images: the first one waited for, the rest for `GROUP_WAIT`."""
        first = await arrived.get()
        if first is None:
            return None
        group = [first]
        until = asyncio.get_running_loop().time() + GROUP_WAIT
        while len(group) < self.settings.batch_size:
            try:
                w = await asyncio.wait_for(arrived.get(), max(0.0, until - asyncio.get_running_loop().time()))
            except TimeoutError:
                break
            if w is None:
                arrived.put_nowait(None)  # the end: seen again by the next call
                break
            group.append(w)
        return group

    async def classify_group(self, group: list[Work]) -> None:
        """Content keys, a second lookup, then decode and classify what is new, and store it."""
        keys = await asyncio.to_thread(lambda: [content_key(w.fetched.data) for w in group if w.fetched])
        misses = []
        for w, key in zip(group, keys, strict=True):
            if w.verify:
                if key == w.content_key:
                    self.stats.verified += 1
                    w.fetched = None
                    continue  # the header key told the truth: the cached answer stands
                self.stats.header_hits -= 1  # it did not: a miss, and the host is distrusted in `record`
                self.stats.header_key_mismatches += 1
                w.cached = w.verify = False
            w.content_key = key
            misses.append(w)
        # Same bytes under a new URL or new headers are still a hit.
        unknown = {k for w in misses if (k := w.content_key or "") not in self.answers and k not in self.first}
        self.answers |= await asyncio.to_thread(self.store.answers, unknown, self.advertiser)
        new: list[Work] = []
        for w in misses:
            key = w.content_key or ""
            if key in self.first:
                w.leader = self.first[key]  # the same bytes twice in one batch: classified once
            elif key in self.answers:
                w.cached = True
                self.stats.content_hits += 1
            else:
                self.first[key] = w
                new.append(w)
        if new:
            await self._classify_new(new)
        for w in group:
            if w.fetched is not None:
                w.fetched = replace(w.fetched, data=b"")  # the bytes are stored or kept by now

    async def _classify_new(self, new: list[Work]) -> None:
        loop = asyncio.get_running_loop()
        decode_one = partial(decode, max_pixels=self.settings.max_pixels, budget=self.service.decode_budget)
        decoded = await asyncio.gather(
            *(
                loop.run_in_executor(self.service.decoders, decode_one, w.fetched.data if w.fetched else b"")
                for w in new
            ),
            return_exceptions=True,
        )
        ready: list[tuple[Work, RGBArray]] = []
        for w, image in zip(new, decoded, strict=True):
            if isinstance(image, ImageDecodeError):
                self.failed[w.content_key or ""] = image.reason
            elif isinstance(image, BaseException):
                _internal(w.result, image, "decode")
                self.failed[w.content_key or ""] = w.result.reason or "internal_error"
            else:
                ready.append((w, image))
        if not ready:
            return
        t0 = time.perf_counter()
        try:
            # Color is predicted even where the scrape gives one: the stored answer serves every
            # later request for the same bytes, and those may come without a color.
            preds = await self.service.batcher.classify(self.pipeline, [im for _, im in ready], [True] * len(ready))
        except Exception as exc:  # noqa: BLE001 -- a model failure skips these images, never the batch
            log.exception("model error on %d images", len(ready))
            for w, _ in ready:
                self.failed[w.content_key or ""] = f"model_error: {type(exc).__name__}"
            return
        self.stats.inference_seconds += time.perf_counter() - t0
        if self._fixed is None:
            self._fixed = await asyncio.to_thread(self.store.fixed_phashes, self.advertiser)
        async with self._storing:  # one group's store writes at a time: they update the batch's sets
            await asyncio.to_thread(self._store_new, [(w, im, p) for (w, im), p in zip(ready, preds, strict=True)])

    def _store_new(self, rows: list[tuple[Work, RGBArray, Any]]) -> None:
        """Images, predictions and kept bytes of a classified group, in one transaction (a thread)."""
        images, predictions, phashes, kept = [], [], {}, {}
        for w, image, p in rows:
            key, data = w.content_key or "", w.fetched.data if w.fetched else b""
            phashes[key] = ph = perceptual_hash(image)
            images.append((key, ph, image.shape[1], image.shape[0], len(data)))
            predictions.append((key, p.model_version, p.type, p.color, p.stored_scores(), p.box))
            kept[key] = data
        if self.service.images is not None:
            try:
                self.service.images.put_many(kept)
            except StorageError as exc:  # kept bytes serve datasets, which can fetch them again
                log.warning("kept images not written (%s); the answers are stored", exc)
        self.store.put_classified(images, predictions)
        self.fresh |= set(phashes)
        self.stats.classified += len(rows)
        for key, ph in phashes.items():
            original = self._near_fixed(ph, key)
            source = self.store.answers([original], self.advertiser).get(original) if original else None
            if original and source is not None:
                self.near[key] = (original, {f: getattr(source, f) for f in source.manual})
                self.stats.near_duplicates += 1

    def _near_fixed(self, phash: int, key: str) -> str | None:
        best = None
        for k, h in self._fixed or []:
            d = hamming(phash, h)
            if k != key and d <= self.settings.phash_distance and (best is None or d < best[0]):
                best = (d, k)
        return best[1] if best else None

    async def record(self) -> None:
        """Answer each item, skip what the deadline left, learn about hosts, record the inventory."""
        missing = {w.content_key for w in self.work if w.ok and w.content_key and w.content_key not in self.answers}
        missing -= set(self.failed)
        if missing:
            self.answers |= await asyncio.to_thread(self.store.answers, missing, self.advertiser)
        for w in self.work:
            key = w.content_key
            if not w.ok:
                continue
            if key in self.failed:
                w.result.skip(self.failed[key or ""])
            elif key is None or key not in self.answers:
                w.result.skip("deadline")
            else:
                self._fill(w, self.answers[key])
        await asyncio.to_thread(self._record_inventory)

    def _fill(self, w: Work, a: Answer) -> None:
        """The answer for one item; a near-duplicate of a fixed image takes that image's fixed fields."""
        r, key = w.result, w.content_key or ""
        r.image_key = key
        r.type, r.color, r.model_version = a.type, a.color, a.model_version
        r.scores = {"type": a.scores.get("type", {}), "color": a.scores.get("color", {})}
        r.source = "manual" if a.manual else ("model" if key in self.fresh and not w.cached else "cache")
        near = self.near.get(key)
        if near and not a.manual:
            r.near_duplicate_of = near[0]
            for f, v in near[1].items():
                setattr(r, f, v)
            r.source = "manual"
        known_color = w.item.known_color
        if known_color and "color" not in a.manual:
            r.color = known_color
        if r.type == PLACEHOLDER:
            r.color = None
        if r.color is not None:
            given = r.color == known_color or "color" in a.manual or r.source == "manual"
            r.color_confident = given or r.scores["color"].get(r.color, 0.0) >= self.settings.low_confidence

    @staticmethod
    def _seen(w: Work) -> UrlSeen | None:
        """What a request taught about this URL (None: no request, or a verification that matched)."""
        key = w.content_key or ""
        if w.not_modified:
            return UrlSeen(w.url or "", w.host, key, w.known, fetched=False)
        if w.fetched is None:
            return None
        h = w.fetched.headers
        return UrlSeen(
            w.url or "",
            w.host,
            key,
            w.known,
            fetched=True,
            header_key=header_key(w.fetched.url, h),
            etag=strong_etag(h.get("etag")),
            last_modified=modified if len(modified := h.get("last-modified", "")) <= 64 else None,
        )

    def _vehicle_colors(self, answered: list[Work]) -> None:
        """Each answer's vehicle color: the vote of every photo the advertiser shows for that vehicle."""
        vehicles = {w.item.vehicle_id for w in answered if w.item.vehicle_id}
        if not vehicles:
            return
        keys = self.store.vehicle_images(self.advertiser, vehicles)
        answers = self.store.answers({k for ks in keys.values() for k in ks}, self.advertiser)
        votes = {v: vehicle_color([answers[k] for k in ks if k in answers]) for v, ks in keys.items()}
        for w in answered:
            vote = votes.get(w.item.vehicle_id or "")
            if vote is not None and vote.color is not None:
                w.result.vehicle_color, w.result.vehicle_color_confidence = vote.color, vote.confidence
        # A model color that a confident vehicle color contradicts goes to the review queue; a
        # fixed color is a person's word and never a doubt.
        doubts = []
        for v, ks in sorted(keys.items()):
            said = votes[v]
            for k in sorted(set(ks)):
                a = answers.get(k)
                if a is not None and "color" not in a.manual and doubtful(a, said):
                    doubts.append(VehicleDoubt(k, self.advertiser, v, a.color or "", said.color or "", said.confidence))
        if doubts and (added := ReviewQueue(self.store).add_vehicle_doubts(doubts)):
            log.info("%d photos disagree with their vehicle's color: queued for review", added)

    def _record_inventory(self) -> None:
        """Sightings, skips, answer counts and what the batch learnt about URLs and hosts (a thread)."""
        answered = [w for w in self.work if w.ok]
        if self.mode != "content":
            lessons = self.store.learn_urls(
                [seen for w in answered if (seen := self._seen(w))], self.settings.url_trust_checks
            )
            for host, why in lessons.headers_distrusted:
                log.warning("host %s untrusted: %s; content keys only from now on", host, why)
                self.stats.hosts_distrusted.append(host)
            for host in lessons.url_trust_earned:
                log.info("host %s: URL trust earned; its known URLs are answered without a request", host)
            for host in lessons.url_trust_lost:
                log.warning("host %s: bytes changed under a known URL; URL trust lost for good", host)
            self.stats.url_trust_earned += lessons.url_trust_earned
            self.stats.url_trust_lost += lessons.url_trust_lost
        self.store.see_many(
            self.advertiser, [(w.url or "", w.content_key or "", w.item.vehicle_id, w.result.source) for w in answered]
        )
        self._vehicle_colors(answered)
        skipped = [w for w in self.work if not w.ok]
        self.store.skip_many(
            self.advertiser,
            [
                (w.url or printable(w.item.url, MAX_URL), w.result.reason or "unknown", w.item.vehicle_id)
                for w in skipped
            ],
        )
        served: list[tuple[str, str, str, str]] = []
        for w in self.work:
            r = w.result
            if r.status == "skipped":
                reason = r.reason or "unknown"
                self.stats.skipped[reason] = self.stats.skipped.get(reason, 0) + 1
            elif r.type and r.source and w.content_key:
                served.append((w.content_key, r.model_version or "manual", r.type, r.source))
        self.store.count_served(self.advertiser, served)
