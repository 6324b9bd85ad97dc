"""The app factory: state at start-up, the request guard, the error table, the routers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from lotlens import __version__
from lotlens.api import problems
from lotlens.api.deps import AppState, find_key
from lotlens.api.docs import add_docs
from lotlens.api.guard import RequestGuard
from lotlens.api.routes import classify, fixes, images, jobs, models, ops, review
from lotlens.api.throttle import AuthThrottle
from lotlens.champion import Champion
from lotlens.config import Settings
from lotlens.jobs import start_runner
from lotlens.store import Store
from lotlens.train.registry import register_default
from lotlens.vision import Pipeline

ROUTERS = (classify.router, fixes.router, images.router, models.router, review.router, ops.router, jobs.router)


def load_store(settings: Settings) -> Store:
    return Store.from_url(settings.resolved_database_url())


def create_app(settings: Settings, store: Store | None = None, pipeline: Pipeline | None = None) -> FastAPI:
    """The FastAPI app. The store and model load at start-up unless given (tests pass them)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        st: Store = store if store is not None else await asyncio.to_thread(load_store, settings)
        if pipeline is None:  # the served model is a registry entry from the start: rollback always works
            await asyncio.to_thread(register_default, st, settings)
        champion = Champion(settings, st, pipeline)
        await asyncio.to_thread(champion.refresh)
        app.state.lotlens = app_state = await asyncio.to_thread(AppState, settings, st, champion)
        # One HTTP client, its connections kept alive, for every batch: requests' and (without a
        # broker) jobs', whose chunks run on this loop through the same service.
        async with app_state.service:
            loop = asyncio.get_running_loop()
            app.state.jobs = await asyncio.to_thread(start_runner, settings, st, champion, app_state.service, loop)
            watcher = asyncio.create_task(app_state.follow_champion())
            try:
                yield
            finally:
                watcher.cancel()
                await asyncio.to_thread(app.state.jobs.close)  # the chunks running now end on the open client
        if store is None:
            st.engine.dispose()

    app = FastAPI(
        title="lotlens",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # add_docs: the same page, from local files
        redoc_url=None,
        description="Type and color tags for car dealers' inventory photos. Authenticate with "
        "`Authorization: Bearer <API key>` (the Authorize button); errors are RFC 9457 problem details "
        "with a stable `code`.",
    )
    for kind, handler in problems.HANDLERS.items():
        app.add_exception_handler(kind, handler)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        app_state = getattr(request.app.state, "lotlens", None)
        if app_state is not None:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            app_state.metrics.requests.labels(path, str(response.status_code)).inc()
        return response

    app.state.auth_throttle = throttle = AuthThrottle()  # the bearer check's and the sign-in page's
    app.add_middleware(
        RequestGuard, settings=settings, key_ok=lambda token: find_key(settings, token) is not None, throttle=throttle
    )
    # Outermost: a TLS proxy's X-Forwarded-Proto/-For count only from LOTLENS_TRUSTED_PROXIES, so the
    # session cookie is Secure behind it and nobody else can claim https or another address.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    for router in ROUTERS:
        app.include_router(router)
    add_docs(app)
    return app
