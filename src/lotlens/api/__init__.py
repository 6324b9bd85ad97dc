"""The HTTP API (FastAPI): classify, fixes, images, health and metrics, with API-key roles.

The only module that knows HTTP status codes. Roles: `scraper` classifies; `advertiser:<id>`
classifies, reads and fixes its own images only; `staff` and `admin` read and fix any, and only
they make global fixes. Without keys configured, everyone is a local admin and `lotlens serve`
binds to localhost only.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lotlens import __version__
from lotlens.config import ApiKey, Settings
from lotlens.jobs import start_runner
from lotlens.service import Item, Service
from lotlens.store import Store
from lotlens.store.registry import Registry
from lotlens.store.repository import FixRecord
from lotlens.store.review import ReviewQueue
from lotlens.train.registry import Champion
from lotlens.vision import Pipeline

log = logging.getLogger(__name__)

STAFF_ROLES = ("staff", "admin")


# -- schemas --------------------------------------------------------------------------------------


# An odd URL, vehicle id or color is one image's problem (skipped, cleaned, or kept beside the
# answer), never a 422 for the whole batch: these limits only bound memory.
class ImageIn(BaseModel):
    url: str = Field(max_length=65536, description="fetched exactly as given; a bad one is skipped as `bad_url`")
    vehicle_id: str | None = Field(default=None, max_length=4096, description="cut to 128 characters")
    color: str | None = Field(
        default=None,
        max_length=4096,
        description="the color the scrape says: a palette color or a synonym is answered as is, "
        "any other value is kept in `scraped_color` and the model predicts",
    )


ADVERTISER = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")


class ClassifyIn(BaseModel):
    advertiser: str = ADVERTISER
    images: list[ImageIn]


class Scores(BaseModel):
    type: dict[str, float] = {}
    color: dict[str, float] = {}


class ResultOut(BaseModel):
    url: str
    status: Literal["ok", "skipped"]
    reason: str | None
    image_key: str | None
    type: str | None
    color: str | None
    source: Literal["model", "cache", "manual"] | None
    scores: Scores
    model_version: str | None
    near_duplicate_of: str | None = None
    scraped_color: str | None = None


class ClassifyOut(BaseModel):
    results: list[ResultOut]


class FixIn(BaseModel):
    image_key: str = Field(min_length=3, max_length=66)
    advertiser: str | None = Field(default=None, max_length=128)
    type: str | None = None
    color: str | None = None
    scope: Literal["advertiser", "global"] = "advertiser"
    comment: str | None = Field(default=None, max_length=2000)


class DecisionIn(BaseModel):
    action: Literal["accept", "reject", "relabel"]
    value: str | None = Field(default=None, max_length=32, description="the label, for relabel")


class PromoteIn(BaseModel):
    alias: Literal["champion", "challenger"] = "champion"
    reason: str | None = Field(default=None, max_length=2000)


class FixOut(BaseModel):
    id: int
    image_key: str
    advertiser: str | None
    field: str
    old: str | None
    new: str | None
    actor: str
    role: str
    scope: str
    comment: str | None
    time: datetime


class ImageOut(BaseModel):
    image_key: str
    advertiser: str | None
    type: str | None
    color: str | None
    source: str
    scores: Scores
    model_version: str | None
    history: list[FixOut]


def _fix_out(f: FixRecord) -> FixOut:
    return FixOut(
        id=f.id,
        image_key=f.content_key,
        advertiser=f.advertiser,
        field=f.field,
        old=f.old_value,
        new=f.new_value,
        actor=f.actor,
        role=f.role,
        scope=f.scope,
        comment=f.comment,
        time=f.created_at,
    )


# -- state, auth and metrics ----------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def advertiser(self) -> str | None:
        return self.role.split(":", 1)[1] if self.role.startswith("advertiser:") else None

    def may_see(self, advertiser: str | None) -> bool:
        return self.role in STAFF_ROLES or (self.advertiser is not None and self.advertiser == advertiser)


LOCAL_ADMIN = Principal("local", "admin")  # no keys configured: serve binds to localhost only


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lotlens_requests_total", "HTTP requests", ["path", "status"], registry=r)
        self.images = Counter("lotlens_images_total", "images answered, by source", ["source"], registry=r)
        self.cache_hits = Counter("lotlens_cache_hits_total", "cache hits by key kind", ["kind"], registry=r)
        self.skipped = Counter("lotlens_skipped_total", "skipped images by reason", ["reason"], registry=r)
        self.fetch = Histogram("lotlens_fetch_seconds", "download time of a batch's misses", registry=r)
        self.inference = Histogram("lotlens_inference_seconds", "model time of a batch", registry=r)
        self.untrusted = Counter(
            "lotlens_hosts_untrusted_total", "hosts whose headers stopped being trusted", registry=r
        )
        self.verifications = Counter(
            "lotlens_header_key_checks_total", "header-key hits fetched anyway, by outcome", ["outcome"], registry=r
        )
        self.model = Gauge("lotlens_model_info", "the model serving answers", ["version"], registry=r)


class WatchCollector:
    """The watch figures of the last day per model version, computed when /metrics is read."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from lotlens.train.monitor import watch

        answers = GaugeMetricFamily(
            "lotlens_answers_last_day", "answers today, by model version", labels=["model_version"]
        )
        rate = GaugeMetricFamily(
            "lotlens_fix_rate_per_1000_last_day", "fixes per 1,000 answers today", labels=["model_version"]
        )
        per_version: dict[str, list[int]] = {}
        for f in watch(self.store, days=1).recent:
            agg = per_version.setdefault(f.model_version, [0, 0])
            agg[0] += f.answers
            agg[1] += f.fixes
        for version, (n, fixes) in sorted(per_version.items()):
            answers.add_metric([version], n)
            rate.add_metric([version], 1000.0 * fixes / n if n else 0.0)
        yield answers
        yield rate


class AppState:
    def __init__(self, settings: Settings, store: Store, champion: Champion) -> None:
        self.settings = settings
        self.store = store
        self.champion = champion
        self.registry = Registry(store)
        self.service = Service(settings, store, champion)
        self.metrics = Metrics()
        self.metrics.registry.register(WatchCollector(store))
        self._served: str | None = None
        self.note_model()

    def note_model(self) -> None:
        """Point the model gauge at the version now serving."""
        version = self.champion().version
        if version != self._served:
            if self._served:
                self.metrics.model.labels(self._served).set(0)
            self.metrics.model.labels(version).set(1)
            self._served = version

    async def follow_champion(self) -> None:
        """Poll the registry; a new champion is loaded beside the old one, then swapped in."""
        while True:
            await asyncio.sleep(self.settings.model_poll_seconds)
            try:
                if await asyncio.to_thread(self.champion.refresh):
                    self.note_model()
            except Exception:  # noqa: BLE001 -- the current model keeps serving whatever happens here
                log.exception("checking the champion failed")


def state(request: Request) -> AppState:
    st: AppState = request.app.state.lotlens
    return st


def find_key(settings: Settings, token: str) -> ApiKey | None:
    """The configured key equal to `token`, compared in constant time (no early exit: the time taken
    does not say which key matched)."""
    found = None
    for k in settings.api_keys:
        if hmac.compare_digest(token.strip().encode(), k.key.encode()):
            found = k
    return found


def principal(request: Request, st: Annotated[AppState, Depends(state)]) -> Principal:
    """The caller, from `Authorization: Bearer <key>`."""
    if not st.settings.api_keys:
        return LOCAL_ADMIN
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    found = find_key(st.settings, token)
    if found is None or scheme.lower() != "bearer":
        raise HTTPException(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return Principal(found.name, found.role)


# -- the role rules, shared by the API and the review pages ---------------------------------------


def require_staff(who: Principal) -> None:
    if who.role not in STAFF_ROLES:
        raise HTTPException(403, "staff and admin only")


def require_admin(who: Principal, what: str) -> None:
    if who.role != "admin":
        raise HTTPException(403, f"only admin {what}")


def check_advertiser(who: Principal, advertiser: str | None) -> str | None:
    """The advertiser whose view `who` reads: its own for an advertiser key, any for staff."""
    advertiser = advertiser or who.advertiser
    if who.role not in STAFF_ROLES and not who.may_see(advertiser):
        raise HTTPException(403, "advertiser keys read only their own images and history")
    return advertiser


def check_image(st: AppState, who: Principal, image_key: str, advertiser: str | None) -> str | None:
    """`check_advertiser`, and an advertiser key sees only images in its own inventory."""
    advertiser = check_advertiser(who, advertiser)
    if who.advertiser is not None and not st.store.seen_by(who.advertiser, image_key):
        raise HTTPException(403, "advertiser keys read only their own images")
    return advertiser


def fix_history(st: AppState, who: Principal, advertiser: str | None, **filters: Any) -> list[FixRecord]:
    """The fix history `who` may read, oldest first: an advertiser key reads its own fixes and the
    global ones on images it shows, and never another advertiser's name."""
    rows = st.store.fixes(advertiser=advertiser, shown_by=who.advertiser, **filters)
    if who.advertiser is None:
        return rows
    return [f if f.advertiser == who.advertiser else replace(f, advertiser=None) for f in rows]


def record_fix(st: AppState, who: Principal, body: FixIn) -> str | None:
    """Record a fix as `who` may make it; return the advertiser whose view it changed (blocking:
    call it in a thread from async code)."""
    fields = [f for f in ("type", "color") if f in body.model_fields_set]
    if not fields:
        raise HTTPException(422, "a fix needs a type or a color")
    advertiser = body.advertiser or who.advertiser
    if body.scope == "global" and who.role not in STAFF_ROLES:
        raise HTTPException(403, "only staff and admin make global fixes")
    if body.scope == "advertiser" and not advertiser:
        raise HTTPException(422, "an advertiser fix needs an advertiser")
    if who.role not in STAFF_ROLES and (who.advertiser is None or who.advertiser != advertiser):
        raise HTTPException(403, f"key {who.name!r} may not fix images of advertiser {advertiser!r}")
    if who.advertiser and not st.store.seen_by(who.advertiser, body.image_key):
        raise HTTPException(403, "this image is not in your inventory")
    for f in fields:
        try:
            st.store.add_fix(
                body.image_key,
                f,
                getattr(body, f),
                actor=who.name,
                role=who.role,
                scope=body.scope,
                advertiser=advertiser,
                comment=body.comment,
            )
        except KeyError as exc:
            raise HTTPException(404, f"unknown image {body.image_key!r}") from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
    return advertiser


State = Annotated[AppState, Depends(state)]
Caller = Annotated[Principal, Depends(principal)]


# -- the app --------------------------------------------------------------------------------------


STORE_RETRY_SECONDS = 5


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """A database error (a restart, a failover): 503 with Retry-After; nothing was half-written,
    since every store call is one transaction."""
    log.warning("store error on %s: %s", request.url.path, exc)
    return JSONResponse(
        {"detail": "the store is not answering; retry shortly"},
        status_code=503,
        headers={"Retry-After": str(STORE_RETRY_SECONDS)},
    )


def load_store(settings: Settings) -> Store:
    return Store.from_url(settings.resolved_database_url())


def create_app(settings: Settings, store: Store | None = None, pipeline: Pipeline | None = None) -> FastAPI:
    """The FastAPI app. The store and model load at start-up unless given (tests pass them)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        st: Store = store if store is not None else await asyncio.to_thread(load_store, settings)
        champion = Champion(settings, st, pipeline)
        await asyncio.to_thread(champion.refresh)
        app.state.lotlens = state = AppState(settings, st, champion)
        app.state.jobs = await asyncio.to_thread(start_runner, settings, st, champion)
        watcher = asyncio.create_task(state.follow_champion())
        yield
        watcher.cancel()
        await asyncio.to_thread(app.state.jobs.close)
        if store is None:
            st.engine.dispose()

    app = FastAPI(
        title="lotlens",
        version=__version__,
        lifespan=lifespan,
        description="Type and color tags for car dealers' inventory photos.",
    )

    app.add_exception_handler(DBAPIError, store_unavailable)
    from lotlens.api.jobs import router as jobs_router  # its routes use this module's dependencies

    app.include_router(jobs_router)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        st = getattr(request.app.state, "lotlens", None)
        if st is not None:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            st.metrics.requests.labels(path, str(response.status_code)).inc()
        return response

    @app.post("/v1/classify", response_model=ClassifyOut, tags=["classify"])
    async def classify(body: ClassifyIn, st: State, who: Caller) -> ClassifyOut:
        """Answer a batch of an advertiser's image URLs, in order; failures are `skipped` with a reason."""
        if who.role not in ("scraper", *STAFF_ROLES) and who.advertiser != body.advertiser:
            raise HTTPException(403, f"key {who.name!r} may not classify for advertiser {body.advertiser!r}")
        if len(body.images) > st.settings.max_batch:
            raise HTTPException(413, f"{len(body.images)} images; at most {st.settings.max_batch} per request")
        items = [Item(i.url, i.vehicle_id, i.color) for i in body.images]
        results, s = await st.service.classify_with_stats(body.advertiser, items)
        m = st.metrics
        m.cache_hits.labels("header").inc(s.header_hits)
        m.cache_hits.labels("content").inc(s.content_hits)
        m.cache_hits.labels("near_duplicate").inc(s.near_duplicates)
        for reason, n in s.skipped.items():
            m.skipped.labels(reason.split(":")[0]).inc(n)
        for r in results:
            if r.source:
                m.images.labels(r.source).inc()
        m.fetch.observe(s.fetch_seconds)
        m.inference.observe(s.inference_seconds)
        m.untrusted.inc(len(s.hosts_distrusted))
        m.verifications.labels("same_bytes").inc(s.verified)
        m.verifications.labels("new_bytes").inc(s.header_key_mismatches)
        return ClassifyOut(results=[ResultOut(**asdict(r)) for r in results])

    @app.post("/v1/fixes", status_code=201, response_model=ImageOut, tags=["fixes"])
    async def add_fix(body: FixIn, st: State, who: Caller) -> ImageOut:
        """Record a manual fix of type and/or color; returns the image's new answer and history."""

        def fix_and_answer() -> ImageOut:
            return image_out(st, body.image_key, record_fix(st, who, body), who)

        return await asyncio.to_thread(fix_and_answer)

    @app.get("/v1/fixes", response_model=list[FixOut], tags=["fixes"])
    async def list_fixes(
        st: State,
        who: Caller,
        advertiser: str | None = None,
        since: Annotated[datetime | None, Query(description="ISO 8601")] = None,
    ) -> list[FixOut]:
        """The fix history, oldest first: the input of the next retraining."""
        advertiser = check_advertiser(who, advertiser)
        return [_fix_out(f) for f in fix_history(st, who, advertiser, since=since)]

    @app.get("/v1/images/{image_key}", response_model=ImageOut, tags=["images"])
    async def image(image_key: str, st: State, who: Caller, advertiser: str | None = None) -> ImageOut:
        """An image's answer as `advertiser` sees it, with its fix history."""
        return image_out(st, image_key, check_image(st, who, image_key, advertiser), who)

    @app.get("/v1/models", tags=["models"])
    async def models(st: State, who: Caller) -> dict[str, Any]:
        """Registered models, the aliases, the promotion log and the version serving now."""
        require_staff(who)
        return {
            "serving": st.champion().version,
            "aliases": st.registry.aliases(),
            "models": [asdict(m) for m in st.registry.models()],
            "promotions": [asdict(p) for p in st.registry.history()],
        }

    @app.post("/v1/models/{version}/promote", status_code=201, tags=["models"])
    async def promote(version: str, body: PromoteIn, st: State, who: Caller) -> dict[str, Any]:
        """Make `version` the champion (or challenger); running servers follow within the poll interval."""
        require_admin(who, "promotes models")
        try:
            rec = st.registry.promote(version, actor=who.name, reason=body.reason, alias=body.alias)
        except KeyError as exc:
            raise HTTPException(404, f"unknown model {version!r}") from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return asdict(rec)

    @app.post("/v1/models/rollback", status_code=201, tags=["models"])
    async def rollback(body: PromoteIn, st: State, who: Caller) -> dict[str, Any]:
        """Point the alias back at the model it had before its latest change."""
        require_admin(who, "rolls back models")
        try:
            return asdict(st.registry.rollback(actor=who.name, reason=body.reason, alias=body.alias))
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from exc

    @app.get("/v1/review", tags=["review"])
    async def review_queue(
        st: State, who: Caller, dataset: str | None = None, status: str | None = "pending"
    ) -> list[dict[str, Any]]:
        """Dataset candidates to judge: conflicts first, then the labels the model doubts most."""
        require_staff(who)
        return [asdict(r) for r in ReviewQueue(st.store).items(dataset, status)]

    @app.post("/v1/review/{item_id}", tags=["review"])
    async def review_decide(item_id: int, body: DecisionIn, st: State, who: Caller) -> dict[str, Any]:
        """Accept, reject or relabel a candidate; the next dataset version applies the decision."""
        require_staff(who)
        try:
            return asdict(ReviewQueue(st.store).decide(item_id, body.action, who.name, body.value))
        except KeyError as exc:
            raise HTTPException(404, f"no review item {item_id}") from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(st: State, response: Response) -> dict[str, Any]:
        checks = {"model": st.champion().version}
        try:
            with st.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 -- any store failure means "not ready", said in the body
            checks["store"] = f"error: {type(exc).__name__}"
            response.status_code = 503
        return checks

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics(st: State) -> Response:
        return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def image_out(st: AppState, image_key: str, advertiser: str | None, who: Principal) -> ImageOut:
    ans = st.store.answers([image_key], advertiser).get(image_key)
    if ans is None:
        raise HTTPException(404, f"unknown image {image_key!r}")
    return ImageOut(
        image_key=image_key,
        advertiser=advertiser,
        type=ans.type,
        color=ans.color,
        source=ans.source,
        scores=Scores(**{k: ans.scores.get(k, {}) for k in ("type", "color")}),
        model_version=ans.model_version,
        history=[_fix_out(f) for f in fix_history(st, who, advertiser, content_key=image_key)],
    )
