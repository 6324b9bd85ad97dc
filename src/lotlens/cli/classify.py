"""`lotlens classify`: paths or URLs, with the model alone or through the service for an advertiser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lotlens.cli.common import (
    _announce,
    _die,
    _fail,
    _json_line,
    _open_store,
    _read_sources,
    _settings,
    app,
    out,
    progress_bar,
)
from lotlens.config import Settings
from lotlens.errors import (
    FetchError,
    ImageDecodeError,
    LotlensError,
)


@app.command()
def classify(
    sources: Annotated[
        list[str] | None, typer.Argument(help="image files or http(s) URLs", metavar="PATH_OR_URL...")
    ] = None,
    from_file: Annotated[Path | None, typer.Option(help="a file with one path or URL a line")] = None,
    advertiser: Annotated[
        str | None, typer.Option(help="run through the service for this advertiser: cache, fixes, history")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="model folder (default: the bundled model)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one object per image, as they are done")] = False,
) -> None:
    """Tell the type and color of each image.

    Images that cannot be read or decoded are skipped with a reason and do not fail the run (exit 0);
    a missing or broken model exits 2. With --advertiser, URLs go through the same service as the
    API (image-key cache, manual fixes, stored answers) in the configured database.
    """
    from lotlens.vision import Pipeline

    todo = list(sources or [])
    if from_file:
        try:
            todo += [line.strip() for line in from_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise _die(f"cannot read {from_file}: {exc.strerror}") from exc
    if not todo:
        raise _die("nothing to classify: give paths or URLs, or --from-file")
    settings = _settings()
    store = _open_store(settings) if advertiser else None
    try:
        if store is not None and model is None:
            from lotlens.champion import Champion

            pipeline = Champion(settings, store)()  # the registry's champion, else the configured model
        else:
            pipeline = Pipeline.load(model or settings.model_dir, settings.threads)
    except LotlensError as exc:
        _fail(exc)
    if store is not None:
        _announce("classify", settings, pipeline.version, advertiser=advertiser, images=len(todo))
    with progress_bar(len(todo) > 1) as bar:
        task = bar.add_task("classify", total=len(todo))
        if store is not None and advertiser:
            stream = _classify_service(todo, advertiser, settings, store, pipeline, lambda n: bar.advance(task, n))
        else:
            stream = _classify_direct(todo, settings, pipeline, lambda n: bar.advance(task, n))
        results = []
        for r in stream:
            if as_json:
                _json_line(r)  # as each batch is done: a consumer can start on the first answers
            else:
                results.append(r)
    if store is not None:
        store.engine.dispose()
    if as_json:
        return
    table = Table(title=f"model {pipeline.version}" + (f", advertiser {advertiser}" if advertiser else ""))
    table.add_column("image", overflow="fold")
    for col in ("type", "p", "color", "p ", "source" if advertiser else "crop"):
        table.add_column(col, justify="right" if col.startswith("p") else "left")
    for r in results:
        if r["status"] != "ok":
            table.add_row(r["source"], f"[yellow]skipped: {r['reason']}[/yellow]", "", "", "", "")
            continue
        tp, cp = r["scores"]["type"].get(r["type"]), r["scores"]["color"].get(r["color"])
        where = r.get("answer_source") or (r["box_source"] if r.get("box") else "whole image" if r["color"] else "-")
        table.add_row(
            r["source"],
            r["type"],
            "" if tp is None else f"{tp:.2f}",
            r["color"] or "-",
            "" if cp is None else f"{cp:.2f}",
            where,
        )
    out.print(table)


def _classify_direct(sources: list[str], settings: Settings, pipeline: Any, advance: Any) -> Iterator[dict[str, Any]]:
    """Decode and classify each source with the model alone (no cache, nothing stored), batch by batch."""
    from lotlens.imaging import decode

    for start in range(0, len(sources), settings.batch_size):
        chunk = sources[start : start + settings.batch_size]
        images, slots, done = [], [], []
        for source, data in zip(chunk, _read_sources(chunk, settings), strict=True):
            slot: dict[str, Any] = {"source": source, "status": "ok", "reason": None}
            try:
                if isinstance(data, FetchError):
                    raise data
                images.append(decode(data, max_pixels=settings.max_pixels))
                slots.append(slot)
            except (FetchError, ImageDecodeError) as exc:
                slot |= {"status": "skipped", "reason": exc.reason, "detail": exc.detail}
            done.append(slot)
        for slot, pred in zip(slots, pipeline.classify(images), strict=True):
            slot.update(pred.as_dict())
        advance(len(chunk))
        yield from done


def _classify_service(
    sources: list[str], advertiser: str, settings: Settings, store: Any, pipeline: Any, advance: Any
) -> Iterator[dict[str, Any]]:
    """Classify URLs through the service, as the API does, chunk by chunk; answers are stored."""
    import asyncio

    from lotlens.service import Item, Service

    service = Service(settings, store, lambda: pipeline)
    step = settings.batch_size * 8
    for start in range(0, len(sources), step):
        chunk = sources[start : start + step]
        for r in asyncio.run(service.classify(advertiser, [Item(u) for u in chunk])):
            d = asdict(r)
            d["answer_source"] = d.pop("source")
            d["source"] = d.pop("url")
            yield d
        advance(len(chunk))
