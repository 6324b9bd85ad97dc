"""One image's story: the picture with its crop box, where it was seen, every prediction, its fixes; thumbnails."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse

from lotlens.errors import ImageDecodeError, NotFound
from lotlens.imaging import thumbnail_jpeg
from lotlens.storage import Storage
from lotlens.store.images import ImageFolder
from lotlens.web.common import THUMB_SIDES, State, Who, render, web_url
from lotlens.web.inventory import _kept_thumb

# -- the image page -------------------------------------------------------------------------------


def crop_box(box: list[int] | None, width: int | None, height: int | None) -> dict[str, int] | None:
    """The crop box in the decoded image's pixels, clipped to it, for an SVG overlay whose viewBox
    is the image: the site's CSP (`style-src 'self'`) drops inline `style` attributes, SVG
    geometry attributes are not styles."""
    if not box or not width or not height:
        return None
    x0, y0, x1, y1 = (max(0, v) for v in box)
    x0, x1 = min(x0, width), min(x1, width)
    y0, y1 = min(y0, height), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, "width": width, "height": height}


router = APIRouter()


@router.get("/images/{image_key}", response_class=HTMLResponse)
async def image_page(
    request: Request,
    image_key: str,
    state: State,
    viewer: Who,
    advertiser: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    def load() -> dict[str, Any]:
        adv, ans = state.access.answer(viewer.who, image_key, advertiser)
        info = state.store.image_info(image_key)
        if info is None:
            raise NotFound(f"unknown image {image_key!r}", "unknown_image")
        preds = state.store.predictions(image_key)
        box = next((p.box for p in reversed(preds) if p.box), None)
        seen = state.store.sightings_of(image_key, None if viewer.staff else viewer.who.advertiser)
        urls = {s.url for s in seen}
        hkeys = [h for h in state.store.header_keys_of(image_key) if viewer.staff or h.url in urls]
        neighbours: tuple[str | None, str | None] = (None, None)
        vehicle = next((x.vehicle_id for x in seen if x.vehicle_id and (adv is None or x.advertiser == adv)), None)
        if adv is not None:
            rows, _ = request.app.state.lotlens_listings.get(state, adv)
            order = list(dict.fromkeys(r.content_key for r in rows if r.content_key))
            if image_key in order:
                i = order.index(image_key)
                neighbours = (order[i - 1] if i > 0 else None, order[i + 1] if i + 1 < len(order) else None)
        return {
            "advertiser": adv,
            "vehicle": vehicle,
            "previous": neighbours[0],
            "next": neighbours[1],
            "answer": ans,
            "info": info,
            "predictions": preds[::-1],
            "box": crop_box(box, info.width, info.height),
            "sightings": seen,
            "header_keys": hkeys,
            "history": state.access.fix_history(viewer.who, adv, content_key=image_key)[::-1],
            "picture": _kept_thumb(state.settings, image_key, 640, adv) or (web_url(seen[0].url) if seen else None),
        }

    data = await asyncio.to_thread(load)
    return render(request, viewer, "image.html", image_key=image_key, **data)


class ThumbnailFolder:
    """Thumbnails cut once and kept, by content key and side (`thumbs/<side>/<2 hex>/<64 hex>.jpg`
    in this process's local cache folder, cut from the kept image in the storage root): the bytes
    behind a content key never change, so neither do these."""

    def __init__(self, storage: Storage, root: Path) -> None:
        self.images = ImageFolder(storage)
        self.root = root

    def path(self, content_key: str, side: int) -> Path:
        rel = ImageFolder.relpath(content_key).removeprefix("images/")  # checks the key
        return self.root / "thumbs" / str(side) / f"{rel}.jpg"

    def get_or_cut(self, content_key: str, side: int, max_pixels: int) -> bytes | None:
        """The kept thumbnail, cut from the kept image on first use; None when the image is not kept.

        Raises:
            ImageDecodeError: the kept image cannot be decoded.
        """
        target = self.path(content_key, side)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            pass
        data = self.images.get(content_key)
        if data is None:
            return None
        jpeg = thumbnail_jpeg(data, side, max_pixels=max_pixels)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        with os.fdopen(fd, "wb") as f:
            f.write(jpeg)
        os.replace(tmp, target)  # two first requests at once: both write the same bytes
        return jpeg


THUMB_CACHE = "private, max-age=31536000, immutable"  # private: who may see an image is per key


@router.get("/images/{image_key}/thumb")
async def thumb(
    request: Request,
    image_key: str,
    state: State,
    viewer: Who,
    side: int = 320,
    advertiser: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    await asyncio.to_thread(state.access.image_view, viewer.who, image_key, advertiser)
    if side not in THUMB_SIDES:
        raise HTTPException(422, f"side must be one of {THUMB_SIDES}")
    if not state.settings.keep_images:
        raise HTTPException(404, "image bytes are not kept (keep_images is off)")
    etag = f'"{image_key.removeprefix("c:")}-{side}"'  # content-addressed: the key is the version
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": THUMB_CACHE})
    folder = ThumbnailFolder(Storage.from_settings(state.settings), state.settings.resolved_cache_dir())
    try:
        jpeg = await asyncio.to_thread(folder.get_or_cut, image_key, side, state.settings.max_pixels)
    except ImageDecodeError as exc:
        raise HTTPException(422, f"the kept image cannot be decoded: {exc.reason}") from exc
    except ValueError as exc:
        raise NotFound(f"unknown image {image_key!r}", "unknown_image") from exc
    if jpeg is None:
        raise HTTPException(404, "the image's bytes are not kept")
    return Response(jpeg, media_type="image/jpeg", headers={"ETag": etag, "Cache-Control": THUMB_CACHE})
