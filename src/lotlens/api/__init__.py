"""The HTTP API (FastAPI): classify, fixes, images, models, review, health and metrics.

The only package that knows HTTP status codes: `problems` maps every error to one, `guard` checks
the key and caps the body before anything else, `deps` declares the state and the caller once,
`routes` holds one module per resource, `app` builds it all. Who may do what is `lotlens.access`.
"""

from __future__ import annotations

from lotlens.access import LOCAL_ADMIN, Principal
from lotlens.api.app import create_app, load_store
from lotlens.api.deps import AppState, Caller, State, find_key, principal, state
from lotlens.api.problems import STORE_RETRY_SECONDS, ApiError

__all__ = [
    "LOCAL_ADMIN",
    "STORE_RETRY_SECONDS",
    "ApiError",
    "AppState",
    "Caller",
    "Principal",
    "State",
    "create_app",
    "find_key",
    "load_store",
    "principal",
    "state",
]
