"""`lotlens dataset ...`, `reclassify`, `monitor`, `images prune` and `cache prune`: the retraining
loop's data and what is kept of it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lotlens.cli.common import _announce, _die, _fail, _json_line, _open_store, _settings, app, out, progress_bar
from lotlens.errors import (
    LotlensError,
)

dataset_app = typer.Typer(no_args_is_help=True, help="Datasets: immutable versions built from fixes.")
app.add_typer(dataset_app, name="dataset")


def _print_dataset_report(report: Any, as_json: bool = False) -> None:
    if as_json:
        _json_line(asdict(report))
        return
    state = "already existed, unchanged" if report.existed else "written"
    out.print(f"{report.version}: {report.rows} rows ({report.new_rows} new), {state}")
    for key, why in sorted(report.dropped.items()):
        out.print(f"  dropped {key}: {why}")
    if report.queued:
        out.print(f"  {report.queued} item(s) in the review queue: lotlens dataset review")
    for w in report.warnings:
        out.print(f"  [yellow]warning:[/yellow] {w}")


@dataset_app.command("create")
def dataset_create(
    from_version: Annotated[str | None, typer.Option("--from", help="the version to extend (default: latest)")] = None,
    since: Annotated[str | None, typer.Option(help="fixes since this ISO date (default: since --from)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one line of JSON")] = False,
) -> None:
    """Build the next version from the manual fixes: filtered, conflicts held for review, split by advertiser."""
    from datetime import datetime

    from lotlens.train.dataset import create

    settings = _settings()
    store = _open_store(settings)
    try:
        with progress_bar() as bar:
            task = bar.add_task("images", total=None)
            report = create(
                settings,
                store,
                parent=from_version,
                since=datetime.fromisoformat(since) if since else None,
                on_step=lambda d, t: bar.update(task, completed=d, total=t),
            )
    except LotlensError as exc:
        _fail(exc)
    _print_dataset_report(report, as_json)


@dataset_app.command("import")
def dataset_import(
    manifest: Annotated[Path, typer.Argument(help="CSV: path,type,color,group[,split]")],
    images_root: Annotated[Path | None, typer.Option(help="folder the paths are relative to")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one line of JSON")] = False,
) -> None:
    """Bring a hand-made set in as a version (the first dataset, or an ad-hoc test set)."""
    from lotlens.train.dataset import import_csv

    try:
        report = import_csv(_settings(), manifest, images_root)
    except LotlensError as exc:
        _fail(exc)
    _print_dataset_report(report, as_json)


@dataset_app.command("review")
def dataset_review(
    accept: Annotated[int | None, typer.Option(help="accept this item's label")] = None,
    reject: Annotated[int | None, typer.Option(help="keep this item out of the next version")] = None,
    relabel: Annotated[int | None, typer.Option(help="give this item the --value label")] = None,
    value: Annotated[str | None, typer.Option(help="the label for --relabel")] = None,
    actor: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
    dataset: Annotated[str | None, typer.Option(help="only this version's items")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one object per line")] = False,
) -> None:
    """List the review queue (conflicts first, then what the model doubts most), or decide one item."""
    from lotlens.store.review import ReviewQueue

    queue = ReviewQueue(_open_store(_settings()))
    for item_id, action in ((accept, "accept"), (reject, "reject"), (relabel, "relabel")):
        if item_id is None:
            continue
        rec = queue.decide(item_id, action, actor, value)
        out.print(f"#{rec.id} {rec.field} of {rec.content_key[:14]}...: {rec.status} {rec.decided_value or ''}")
        return
    if as_json:
        for it in queue.items(dataset):
            _json_line(asdict(it))
        return
    table = Table(title="review queue")
    table.add_column("id", justify="right")
    for col in ("kind", "image", "field", "labels", "model", "score"):
        table.add_column(col, overflow="fold")
    for it in queue.items(dataset):
        labels = "; ".join(
            f"{c['value']} ({c.get('advertiser') or c.get('source') or c.get('near', '')[:12]})" for c in it.candidates
        )
        table.add_row(
            str(it.id), it.kind, it.content_key[:14], it.field, labels, it.model_value or "-", f"{it.score:.2f}"
        )
    out.print(table)


@app.command()
def reclassify(
    advertiser: Annotated[str | None, typer.Option(help="this advertiser's images")] = None,
    all_images: Annotated[bool, typer.Option("--all", help="every image in the store")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one object per line")] = False,
) -> None:
    """Recompute cached answers with the champion; fixed images are never touched; resumable."""
    from lotlens.champion import Champion
    from lotlens.train.reclassify import reclassify as run_reclassify

    if bool(advertiser) == all_images:
        raise _die("give --advertiser A or --all")
    settings = _settings()
    store = _open_store(settings)
    try:
        pipeline = Champion(settings, store)()
    except LotlensError as exc:
        _fail(exc)
    _announce("reclassify", settings, pipeline.version, advertiser=advertiser or "all")
    with progress_bar() as bar:
        task = bar.add_task("reclassify", total=None)
        report = run_reclassify(
            settings, store, pipeline, advertiser, on_step=lambda d, t: bar.update(task, completed=d, total=t)
        )
    if as_json:
        _json_line(asdict(report))
        return
    out.print(
        f"{report.model_version}: {report.reclassified} reclassified, {report.already_done} already done, "
        f"{report.manual} manually fixed (left alone), {len(report.skipped)} skipped, of {report.images}"
    )
    for key, why in sorted(report.skipped.items()):
        out.print(f"  skipped {key}: {why}")


@app.command()
def monitor(
    days: Annotated[int, typer.Option(help="days to look back")] = 14,
    recent_days: Annotated[int, typer.Option(help="the recent span compared with the days before it")] = 1,
    fix_rate_factor: Annotated[float, typer.Option(help="flag a fix rate this many times the baseline")] = 2.0,
    min_fix_rate: Annotated[float, typer.Option(help="...and at least this many fixes per 1,000")] = 5.0,
    mix_shift: Annotated[float, typer.Option(help="flag a type mix that moved by more than this share")] = 0.15,
    as_json: Annotated[
        bool, typer.Option("--json", help='JSON Lines: one object per advertiser and model, then {"flag": ...} lines')
    ] = False,
) -> None:
    """Per model version and advertiser: images answered (each once a day, from the model or the
    cache), type mix, fixes per 1,000 answers; flags what moved, naming the model that served."""
    from lotlens.store.registry import Registry
    from lotlens.train.monitor import watch

    settings = _settings()
    store = _open_store(settings)
    champion = Registry(store).alias("champion")
    _announce("monitor", settings, champion, days=days)
    w = watch(store, days, recent_days, fix_rate_factor, min_fix_rate, mix_shift, champion=champion)
    if as_json:
        for f in w.recent:
            base = w.baseline.get((f.advertiser, f.model_version))
            _json_line(
                asdict(f)
                | {"fix_rate": f.fix_rate, "baseline_fix_rate": base.fix_rate if base and base.answers else None}
            )
        for flag in w.flags:
            _json_line({"flag": flag})
        return
    table = Table(title=f"last {recent_days} day(s) vs the {days - recent_days} before")
    for col in (
        "advertiser",
        "model",
        "images",
        "model/cache",
        *(f"% {t}" for t in ("Dealer", "Stock", "Placeholder")),
        "fixes",
        "fixes/1000",
        "baseline",
    ):
        table.add_column(col, overflow="fold")
    for f in w.recent:
        base = w.baseline.get((f.advertiser, f.model_version))
        mix = f.mix()
        table.add_row(
            f.advertiser,
            f.model_version,
            str(f.answers),
            f"{f.sources.get('model', 0)}/{f.sources.get('cache', 0)}",
            *(f"{100 * mix[t]:.0f}" for t in mix),
            str(f.fixes),
            f"{f.fix_rate:.1f}",
            f"{base.fix_rate:.1f}" if base and base.answers else "-",
        )
    out.print(table)
    for flag in w.flags:
        out.print(f"[yellow]flag:[/yellow] {flag}")
    if not w.flags:
        out.print("no advertiser moved past the thresholds")


images_app = typer.Typer(no_args_is_help=True, help="Kept image bytes: retention.")
app.add_typer(images_app, name="images")


@images_app.command("prune")
def images_prune(
    older_than: Annotated[
        int, typer.Option(min=1, help="days: delete bytes of images no advertiser has shown for this long")
    ],
    served_days: Annotated[
        int, typer.Option(min=1, help="days of the watch's per-image served rows to keep (monitor reads 14)")
    ] = 90,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would go; delete nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one line of JSON")] = False,
) -> None:
    """Delete the kept bytes of images not shown for --older-than days, except those a dataset
    version uses or someone fixed; drop served-image rows older than --served-days."""
    from datetime import timedelta

    from lotlens.train.retention import prune

    settings = _settings()
    store = _open_store(settings)
    _announce("images prune", settings, None, older_than=older_than, dry_run=dry_run)
    try:
        r = prune(settings, store, timedelta(days=older_than), timedelta(days=served_days), dry_run)
    except LotlensError as exc:
        _fail(exc)
    finally:
        store.engine.dispose()
    if as_json:
        _json_line(asdict(r) | {"removed": len(r.removed)})
        return
    verb = "would delete" if dry_run else "deleted"
    out.print(
        f"{r.images} kept images: {verb} {len(r.removed)} ({r.bytes_freed / 1e6:.1f} MB); kept {r.in_dataset} in a "
        f"dataset, {r.fixed} fixed, {r.recent} shown within {older_than} days"
    )
    if not dry_run:
        out.print(f"served-image rows older than {served_days} days: {r.served_rows_removed} dropped")


cache_app = typer.Typer(no_args_is_help=True, help="This host's local cache folder (LOTLENS_CACHE_DIR).")
app.add_typer(cache_app, name="cache")


@cache_app.command("prune")
def cache_prune(
    older_than: Annotated[int, typer.Option(min=1, help="days: remove copies not made or used for this long")] = 30,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would go; delete nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one line of JSON")] = False,
) -> None:
    """Remove from this host's cache what can be made again: thumbnails older than --older-than days
    or of images whose kept bytes are gone, model copies unused that long and not named by an alias,
    training copies that old, partial writes. Run it on every host (API replicas, workers)."""
    from datetime import timedelta

    from lotlens.train.retention import prune_cache

    settings = _settings()
    store = _open_store(settings)
    _announce("cache prune", settings, None, older_than=older_than, dry_run=dry_run)
    try:
        r = prune_cache(settings, store, timedelta(days=older_than), dry_run)
    except LotlensError as exc:
        _fail(exc)
    finally:
        store.engine.dispose()
    if as_json:
        _json_line(asdict(r))
        return
    verb = "would remove" if dry_run else "removed"
    out.print(
        f"{settings.resolved_cache_dir()}: {verb} {r.thumbnails} thumbnails ({r.thumbnails_unkept} of images no "
        f"longer kept), {r.model_copies} model copies, {r.mirror_files} training copies, {r.partials} partial "
        f"writes: {r.bytes_freed / 1e6:.1f} MB; model copies kept: {', '.join(r.kept_model_copies) or 'none'}"
    )
