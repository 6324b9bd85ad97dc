"""What every route depends on, declared once: the app's state and the caller."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lotlens.access import LOCAL_ADMIN, Access, Principal
from lotlens.api.metrics import Metrics, WatchCollector
from lotlens.api.problems import ApiError
from lotlens.champion import Champion
from lotlens.config import ApiKey, Settings
from lotlens.service import Service
from lotlens.store import Store
from lotlens.store.registry import Registry

log = logging.getLogger(__name__)


class AppState:
    """One per app: settings, store, the champion model, the service, the rules and the metrics."""

    def __init__(self, settings: Settings, store: Store, champion: Champion) -> None:
        self.settings = settings
        self.store = store
        self.champion = champion
        self.access = Access(store)
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
    app_state: AppState = request.app.state.lotlens
    return app_state


def find_key(settings: Settings, token: str) -> ApiKey | None:
    """The configured key equal to `token`, compared in constant time (no early exit: the time taken
    does not say which key matched)."""
    found = None
    for k in settings.api_keys:
        if hmac.compare_digest(token.strip().encode(), k.key.encode()):
            found = k
    return found


bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")


def principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller, from `Authorization: Bearer <key>`."""
    app_state = state(request)
    if not app_state.settings.api_keys:
        return LOCAL_ADMIN
    found = find_key(app_state.settings, credentials.credentials) if credentials else None
    if found is None:
        raise ApiError(401, "unauthorized", "missing or unknown API key", {"WWW-Authenticate": "Bearer"})
    return Principal(found.name, found.role)


State = Annotated[AppState, Depends(state)]
Caller = Annotated[Principal, Depends(principal)]
