"""The review pages: server-rendered HTML on the API's own app, for staff and advertisers.

Sign in with an API key; the pages then show an advertiser's images, one image's story, the fix
history, the dataset review queue and the model registry, under the API's role rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lotlens.config import Settings
    from lotlens.store import Store
    from lotlens.vision import Pipeline


def create_app(settings: Settings, store: Store | None = None, pipeline: Pipeline | None = None) -> FastAPI:
    """The API (`lotlens.api.create_app`) with the review pages mounted on it."""
    from lotlens.api import create_app as create_api
    from lotlens.web.advertisers import HealthCache
    from lotlens.web.inventory import ListingCache
    from lotlens.web.pages import add_pages
    from lotlens.web.session import Sessions

    app = create_api(settings, store, pipeline)
    app.state.lotlens_sessions = Sessions(settings)
    app.state.lotlens_listings = ListingCache()
    app.state.lotlens_health = HealthCache()
    add_pages(app)
    return app
