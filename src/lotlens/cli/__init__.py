"""The command line: `lotlens classify | train | evaluate | split`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lotlens.config import Settings
from lotlens.errors import FetchError, ImageDecodeError, LotlensError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Type and color tags for inventory photos.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress]:
    """A rich progress bar on stderr (hidden when stderr is not a terminal or `enabled` is False)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not enabled,
    ) as bar:
        yield bar


def _die(message: str) -> typer.Exit:
    """Print `message` as an error; the caller raises what this returns (exit status 2)."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _fail(exc: LotlensError) -> None:
    raise _die(str(exc))


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _read_sources(sources: list[str], settings: Settings) -> list[bytes | FetchError]:
    """Bytes (or the error) of each local file or http(s) URL; URLs are fetched concurrently."""
    import asyncio

    from lotlens.fetch import Fetcher

    async def fetch_all(urls: list[str]) -> list[bytes | FetchError]:
        async with Fetcher(settings) as f:
            got = await asyncio.gather(*(f.get(u) for u in urls), return_exceptions=True)
        out: list[bytes | FetchError] = []
        for g in got:
            if isinstance(g, BaseException) and not isinstance(g, FetchError):
                raise g
            out.append(g if isinstance(g, FetchError) else g.data)
        return out

    urls = [s for s in sources if _is_url(s)]
    fetched = iter(asyncio.run(fetch_all(urls)) if urls else [])
    result: list[bytes | FetchError] = []
    for s in sources:
        if _is_url(s):
            result.append(next(fetched))
        else:
            try:
                result.append(_read_file(s, settings))
            except FetchError as exc:
                result.append(exc)
    return result


def _read_file(source: str, settings: Settings) -> bytes:
    path = Path(source)
    try:
        if path.stat().st_size > settings.max_image_bytes:
            raise FetchError("too_large", f"{path.stat().st_size} bytes")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise FetchError("not_found", source) from exc
    except IsADirectoryError as exc:
        raise FetchError("not_a_file", source) from exc
    except OSError as exc:
        raise FetchError("unreadable", f"{source}: {exc.strerror}") from exc


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
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list instead of a table")] = False,
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
    settings = Settings()
    store = _open_store(settings) if advertiser else None
    try:
        if store is not None and model is None:
            from lotlens.train.registry import Champion

            pipeline = Champion(settings, store)()  # the registry's champion, else the configured model
        else:
            pipeline = Pipeline.load(model or settings.model_dir, settings.threads, settings.batch_size)
    except LotlensError as exc:
        _fail(exc)
    with progress_bar(len(todo) > 1) as bar:
        task = bar.add_task("classify", total=len(todo))
        if store is not None and advertiser:
            results = _classify_service(todo, advertiser, settings, store, pipeline, lambda n: bar.advance(task, n))
            store.engine.dispose()
        else:
            results = _classify_direct(todo, settings, pipeline, lambda n: bar.advance(task, n))
    if as_json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
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


def _classify_direct(sources: list[str], settings: Settings, pipeline: Any, advance: Any) -> list[dict[str, Any]]:
    """Decode and classify each source with the model alone (no cache, nothing stored)."""
    from lotlens.imaging import decode

    results: list[dict[str, Any]] = []
    for start in range(0, len(sources), settings.batch_size):
        chunk = sources[start : start + settings.batch_size]
        images, slots = [], []
        for source, data in zip(chunk, _read_sources(chunk, settings), strict=True):
            slot: dict[str, Any] = {"source": source, "status": "ok", "reason": None}
            try:
                if isinstance(data, FetchError):
                    raise data
                images.append(decode(data, max_pixels=settings.max_pixels))
                slots.append(slot)
            except (FetchError, ImageDecodeError) as exc:
                slot |= {"status": "skipped", "reason": exc.reason, "detail": exc.detail}
            results.append(slot)
        for slot, pred in zip(slots, pipeline.classify(images), strict=True):
            slot.update(pred.as_dict())
        advance(len(chunk))
    return results


def _open_store(settings: Settings) -> Any:
    from lotlens.store import Store

    try:
        return Store.from_url(settings.resolved_database_url())
    except Exception as exc:  # noqa: BLE001 -- any database failure ends the run with its message
        raise _die(f"database: {exc}") from exc


def _classify_service(
    sources: list[str], advertiser: str, settings: Settings, store: Any, pipeline: Any, advance: Any
) -> list[dict[str, Any]]:
    """Classify URLs through the service, as the API does; answers are stored."""
    import asyncio
    from dataclasses import asdict

    from lotlens.service import Item, Service

    service = Service(settings, store, lambda: pipeline)
    results: list[dict[str, Any]] = []
    step = settings.batch_size * 8
    for start in range(0, len(sources), step):
        chunk = sources[start : start + step]
        for r in asyncio.run(service.classify(advertiser, [Item(u) for u in chunk])):
            d = asdict(r)
            d["answer_source"] = d.pop("source")
            d["source"] = d.pop("url")
            results.append(d)
        advance(len(chunk))
    return results


train_app = typer.Typer(help="Train a model, or sweep candidates on a dataset version.")
app.add_typer(train_app, name="train")


@train_app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    manifest: Annotated[Path | None, typer.Option(help="CSV: path,type,color,group")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="model folder to write")] = None,
    images_root: Annotated[Path | None, typer.Option(help="folder the manifest's paths are relative to")] = None,
    seed: Annotated[int, typer.Option(help="random seed (split, generators, fit)")] = 0,
    generated_placeholders: Annotated[int, typer.Option(help="generated placeholder graphics to add")] = 300,
    name: Annotated[str, typer.Option(help="model name, the prefix of its version")] = "lotlens",
) -> None:
    """Train type and color heads on a manifest and write a model folder."""
    if ctx.invoked_subcommand:
        return
    if manifest is None or out_dir is None:
        raise _die("lotlens train needs --manifest and --out (or a subcommand: sweep)")
    from lotlens.train.fit import TrainConfig
    from lotlens.train.fit import train as run_train

    cfg = TrainConfig(seed=seed, generated_placeholders=generated_placeholders, name=name)
    try:
        with progress_bar() as bar:
            tasks: dict[str, Any] = {}

            def step(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=total)
                bar.update(tasks[phase], completed=done, total=total)

            folder = run_train(manifest, out_dir, images_root, cfg, on_step=step)
    except LotlensError as exc:
        _fail(exc)
    m = folder.meta["metrics"]
    out.print(f"wrote {out_dir} ({folder.version})")
    if m:
        out.print(
            f"validation: type accuracy {m['type']['accuracy']:.3f}, placeholder recall "
            f"{m['type']['recall'].get('Placeholder', float('nan')):.3f}, color top-1 {m['color']['accuracy']:.3f}"
        )


@app.command()
def split(
    manifest: Annotated[Path, typer.Option(help="CSV: path,type,color,group")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for train.csv and test.csv")],
    test_size: Annotated[float, typer.Option(help="share of rows held out")] = 0.3,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Split a manifest into train.csv and test.csv, group-aware and stratified by label.

    Paths stay relative to the original manifest's folder: pass it as `--images-root`.
    """
    from lotlens.train.manifest import read_manifest, write_manifest
    from lotlens.train.split import group_split

    try:
        rows = read_manifest(manifest)
    except LotlensError as exc:
        _fail(exc)
    train_idx, test_idx = group_split(rows, test_size, seed)
    write_manifest([rows[i] for i in train_idx], out_dir / "train.csv")
    write_manifest([rows[i] for i in test_idx], out_dir / "test.csv")
    out.print(f"{out_dir / 'train.csv'}: {len(train_idx)} rows, {out_dir / 'test.csv'}: {len(test_idx)} rows")


@app.command()
def evaluate(
    manifest: Annotated[Path, typer.Option(help="CSV: path,type,color,group")],
    model: Annotated[Path | None, typer.Option(help="model folder (default: the bundled model)")] = None,
    images_root: Annotated[Path | None, typer.Option(help="folder the paths are relative to")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    report: Annotated[Path | None, typer.Option(help="write an HTML report with plots into this folder")] = None,
    compare: Annotated[
        Path | None, typer.Option(help="a second model folder (b) to score on the same rows, side by side")
    ] = None,
) -> None:
    """Score a model on a labelled manifest: accuracy, recall, confusion, per-group accuracy, calibration.

    With `--compare MODEL_DIR`, both models run on the same rows: per class, per group, and the
    images where their answers differ (thumbnails in the HTML report).
    """
    from lotlens.train.evaluate import evaluate as run_evaluate
    from lotlens.train.evaluate import evaluate_compare
    from lotlens.vision import Pipeline

    settings = Settings()
    if compare is not None:
        try:
            pipeline_a = Pipeline.load(model or settings.model_dir, settings.threads, settings.batch_size)
            pipeline_b = Pipeline.load(compare, settings.threads, settings.batch_size)
            with progress_bar(not as_json) as bar:
                task = bar.add_task("evaluate a, then b", total=None)
                both = evaluate_compare(
                    pipeline_a,
                    pipeline_b,
                    manifest,
                    images_root,
                    on_step=lambda d, t: bar.update(task, completed=d, total=t),
                )
        except LotlensError as exc:
            _fail(exc)
        if report:
            from lotlens.train.report import write_compare_report

            page = write_compare_report(both, report, images_root or manifest.parent)
            if not as_json:
                out.print(f"report: {page}")
        if as_json:
            sys.stdout.write(json.dumps(both, indent=2) + "\n")
            return
        _print_comparison(both)
        return
    try:
        pipeline = Pipeline.load(model or settings.model_dir, settings.threads, settings.batch_size)
        with progress_bar(not as_json) as bar:
            task = bar.add_task("evaluate", total=None)
            result = run_evaluate(
                pipeline, manifest, images_root, on_step=lambda d, t: bar.update(task, completed=d, total=t)
            )
    except LotlensError as exc:
        _fail(exc)
    if report:
        from lotlens.train.report import write_report

        page = write_report(result, report)
        if not as_json:
            out.print(f"report: {page}")
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    _print_evaluation(result)


def _pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}%"  # None or NaN: nothing measured


def _print_comparison(r: dict[str, Any]) -> None:
    from collections import Counter

    a, b = r["a"], r["b"]
    out.print(f"a = {a['model']}, b = {b['model']} on {r['manifest']['path']} ({r['manifest']['rows']} rows)")
    t = Table(title="a against b")
    for col in ("", "a", "b"):
        t.add_column(col, justify="left" if not col else "right")
    t.add_row(f"type accuracy (n={a['type']['n']})", _pct(a["type"]["accuracy"]), _pct(b["type"]["accuracy"]))
    t.add_row("placeholder recall", _pct(a["placeholder_recall"]), _pct(b["placeholder_recall"]))
    t.add_row(f"color top-1 (n={a['color']['n']})", _pct(a["color"]["accuracy"]), _pct(b["color"]["accuracy"]))
    t.add_row("color ECE", _pct(a["color_calibration"]["ece"]), _pct(b["color_calibration"]["ece"]))
    for c in r["classes"]:
        t.add_row(f"{c['task']} recall {c['label']} (n={c['n']})", _pct(c["a"]), _pct(c["b"]))
    out.print(t)
    wins = Counter(d["winner"] for d in r["differ"])
    out.print(f"{len(r['differ'])} answers differ: a right {wins['a']}, b right {wins['b']}, neither {wins['neither']}")


def _print_evaluation(r: dict[str, Any]) -> None:
    t, c = r["type"], r["color"]
    out.print(
        f"model {r['model']} on {r['manifest']['path']} ({r['manifest']['rows']} rows, {len(r['skipped'])} unreadable)"
    )
    out.print(f"type:  n={t['n']}  accuracy {_pct(t['accuracy'])}  placeholder recall {_pct(r['placeholder_recall'])}")
    out.print(f"color: n={c['n']}  top-1 {_pct(c['accuracy'])}  top-2 {_pct(c['top2'])}")
    if "color_calibration" in r:
        out.print(f"color confidence: expected calibration error {_pct(r['color_calibration']['ece'])}")
    for name, m in (("type", t), ("color", c)):
        table = Table(title=f"{name}: per class", show_lines=False)
        for col in ("class", "n", "precision", "recall"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for label in m["confusion"]["labels"]:
            if m["support"].get(label) or label in m["precision"]:
                table.add_row(
                    label,
                    str(m["support"].get(label, 0)),
                    _pct(m["precision"].get(label)),
                    _pct(m["recall"].get(label)),
                )
        out.print(table)
        cm = Table(title=f"{name}: confusion (rows true, columns predicted)")
        labels = m["confusion"]["labels"]
        cm.add_column("")
        for label in labels:
            cm.add_column(label[:5], justify="right")
        for label, row in zip(labels, m["confusion"]["matrix"], strict=True):
            if any(row):
                cm.add_row(label, *(str(v) if v else "." for v in row))
        out.print(cm)
    g = Table(title="per group (advertiser), worst first")
    for col in ("group", "n type", "type acc", "n color", "color acc"):
        g.add_column(col, justify="left" if col == "group" else "right")
    for row in r["groups"]:
        g.add_row(
            row["group"],
            str(row["n_type"]),
            _pct(row["type_accuracy"]),
            str(row["n_color"]),
            _pct(row["color_accuracy"]),
        )
    out.print(g)
    w = Table(title="most wrong")
    for col in ("task", "path", "group", "expected", "answer", "p(expected)"):
        w.add_column(col)
    for row in r["most_wrong"]:
        w.add_row(
            row["task"], row["path"], row["group"], str(row["expected"]), str(row["answer"]), f"{row['p_expected']:.3f}"
        )
    out.print(w)


db_app = typer.Typer(no_args_is_help=True, help="The store's database.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database (`LOTLENS_DATABASE_URL`, default SQLite under the data folder)."""
    from lotlens.store import make_engine, upgrade

    url = Settings().resolved_database_url()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    out.print(f"database at {engine.url.render_as_string(hide_password=True)} is up to date")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default LOTLENS_HOST, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default LOTLENS_PORT, 8000)")] = None,
) -> None:
    """Run the HTTP API (OpenAPI at /docs) and the review pages (/). Without API keys it binds to
    localhost only."""
    import ipaddress

    import uvicorn

    from lotlens.web import create_app

    settings = Settings()
    bind = host or settings.host
    if not settings.api_keys:
        loopback = bind == "localhost"
        if not loopback:
            try:
                loopback = ipaddress.ip_address(bind).is_loopback
            except ValueError:
                loopback = False
        if not loopback:
            raise _die(f"no LOTLENS_API_KEYS configured: refusing to bind {bind}; use 127.0.0.1")
    uvicorn.run(create_app(settings), host=bind, port=port or settings.port, log_level="info")


@app.command()
def fix(
    image_key: Annotated[str, typer.Argument(help="the image key (c:...) from classify --json or the API")],
    advertiser: Annotated[str | None, typer.Option(help="whose view the fix changes")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="the right type")] = None,
    color: Annotated[str | None, typer.Option(help="the right color ('none' for no color)")] = None,
    scope: Annotated[str, typer.Option(help="advertiser | global")] = "advertiser",
    actor: Annotated[str, typer.Option(help="who makes the fix (recorded in the history)")] = "cli",
    comment: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Record a manual fix as staff; it is never overwritten by the model and goes into the history."""
    from lotlens.store import Store

    if type_ is None and color is None:
        raise _die("give --type and/or --color")
    store = Store.from_url(Settings().resolved_database_url())
    try:
        for field_name, value in (("type", type_), ("color", color)):
            if value is not None:
                rec = store.add_fix(
                    image_key,
                    field_name,
                    value,
                    actor=actor,
                    role="staff",
                    scope=scope,
                    advertiser=advertiser,
                    comment=comment,
                )
                out.print(f"{rec.field}: {rec.old_value} -> {rec.new_value} ({rec.scope}, by {rec.actor})")
    except KeyError as exc:
        raise _die(f"unknown image {image_key}") from exc
    except ValueError as exc:
        raise _die(str(exc)) from exc
    finally:
        store.engine.dispose()


models_app = typer.Typer(no_args_is_help=True, help="The model registry: register, promote, roll back.")
app.add_typer(models_app, name="models")


def _registry() -> Any:
    from lotlens.store import Store
    from lotlens.store.registry import Registry

    return Registry(Store.from_url(Settings().resolved_database_url()))


@models_app.command("register")
def models_register(
    model_dir: Annotated[Path, typer.Argument(help="a model folder written by `lotlens train`")],
    actor: Annotated[str, typer.Option(help="who registers it")] = "cli",
    dataset: Annotated[str | None, typer.Option(help="the dataset version it was trained on")] = None,
) -> None:
    """Copy a model folder into the registry (`<data_dir>/models/<version>`)."""
    from lotlens.store import Store
    from lotlens.train.registry import register

    settings = Settings()
    try:
        rec = register(Store.from_url(settings.resolved_database_url()), model_dir, settings, actor, dataset)
    except LotlensError as exc:
        _fail(exc)
    out.print(f"registered {rec.version} at {rec.path}")


@models_app.command("list")
def models_list() -> None:
    """Registered models with their validation metrics and aliases."""
    reg = _registry()
    aliases = {v: a for a, v in reg.aliases().items()}
    table = Table(title="models")
    table.add_column("version", overflow="fold")
    for col in ("alias", "type acc", "placeholder recall", "color top-1", "registered"):
        table.add_column(col)
    for m in reg.models():
        t, c = m.metrics.get("type", {}), m.metrics.get("color", {})
        table.add_row(
            m.version,
            aliases.get(m.version, ""),
            _pct(t.get("accuracy")),
            _pct(t.get("recall", {}).get("Placeholder")),
            _pct(c.get("accuracy")),
            f"{m.created_at:%Y-%m-%d %H:%M} by {m.registered_by}",
        )
    out.print(table)


@models_app.command("show")
def models_show(version: Annotated[str, typer.Argument(help="a registered version")]) -> None:
    """One model's record and the promotions that involved it, as JSON."""
    from dataclasses import asdict

    reg = _registry()
    rec = reg.get(version)
    if rec is None:
        raise _die(f"unknown model {version}")
    history = [asdict(p) for p in reg.history() if version in (p.to_version, p.from_version)]
    sys.stdout.write(json.dumps({"model": asdict(rec), "promotions": history}, indent=2, default=str) + "\n")


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="a registered version")],
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    actor: Annotated[str, typer.Option(help="who promotes (recorded)")] = "cli",
    alias: Annotated[str, typer.Option(help="champion | challenger")] = "champion",
) -> None:
    """Point an alias at a model; running servers switch within LOTLENS_MODEL_POLL_SECONDS."""
    try:
        rec = _registry().promote(version, actor=actor, reason=reason, alias=alias)
    except KeyError as exc:
        raise _die(f"unknown model {version}; register it first") from exc
    except ValueError as exc:
        raise _die(str(exc)) from exc
    out.print(f"{rec.alias}: {rec.from_version} -> {rec.to_version}")


@models_app.command("rollback")
def models_rollback(
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    actor: Annotated[str, typer.Option(help="who rolls back (recorded)")] = "cli",
    alias: Annotated[str, typer.Option(help="champion | challenger")] = "champion",
) -> None:
    """Point an alias back at the model it had before its latest change."""
    try:
        rec = _registry().rollback(actor=actor, reason=reason, alias=alias)
    except LookupError as exc:
        raise _die(str(exc)) from exc
    out.print(f"{rec.alias}: {rec.from_version} -> {rec.to_version} (rollback)")


dataset_app = typer.Typer(no_args_is_help=True, help="Datasets: immutable versions built from fixes.")
app.add_typer(dataset_app, name="dataset")


def _print_dataset_report(report: Any) -> None:
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
) -> None:
    """Build the next version from the manual fixes: filtered, conflicts held for review, split by advertiser."""
    from datetime import datetime

    from lotlens.train.dataset import create

    settings = Settings()
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
    _print_dataset_report(report)


@dataset_app.command("import")
def dataset_import(
    manifest: Annotated[Path, typer.Argument(help="CSV: path,type,color,group[,split]")],
    images_root: Annotated[Path | None, typer.Option(help="folder the paths are relative to")] = None,
) -> None:
    """Bring a hand-made set in as a version (the first dataset, or an ad-hoc test set)."""
    from lotlens.train.dataset import import_csv

    try:
        report = import_csv(Settings(), manifest, images_root)
    except LotlensError as exc:
        _fail(exc)
    _print_dataset_report(report)


@dataset_app.command("review")
def dataset_review(
    accept: Annotated[int | None, typer.Option(help="accept this item's label")] = None,
    reject: Annotated[int | None, typer.Option(help="keep this item out of the next version")] = None,
    relabel: Annotated[int | None, typer.Option(help="give this item the --value label")] = None,
    value: Annotated[str | None, typer.Option(help="the label for --relabel")] = None,
    actor: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
    dataset: Annotated[str | None, typer.Option(help="only this version's items")] = None,
) -> None:
    """List the review queue (conflicts first, then what the model doubts most), or decide one item."""
    from lotlens.store.review import ReviewQueue

    queue = ReviewQueue(_open_store(Settings()))
    for item_id, action in ((accept, "accept"), (reject, "reject"), (relabel, "relabel")):
        if item_id is None:
            continue
        try:
            rec = queue.decide(item_id, action, actor, value)
        except KeyError as exc:
            raise _die(f"no review item {item_id}") from exc
        except ValueError as exc:
            raise _die(str(exc)) from exc
        out.print(f"#{rec.id} {rec.field} of {rec.content_key[:14]}...: {rec.status} {rec.decided_value or ''}")
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
) -> None:
    """Recompute cached answers with the champion; fixed images are never touched; resumable."""
    from lotlens.train.reclassify import reclassify as run_reclassify
    from lotlens.train.registry import Champion

    if bool(advertiser) == all_images:
        raise _die("give --advertiser A or --all")
    settings = Settings()
    store = _open_store(settings)
    try:
        pipeline = Champion(settings, store)()
    except LotlensError as exc:
        _fail(exc)
    with progress_bar() as bar:
        task = bar.add_task("reclassify", total=None)
        report = run_reclassify(
            settings, store, pipeline, advertiser, on_step=lambda d, t: bar.update(task, completed=d, total=t)
        )
    out.print(
        f"{report.model_version}: {report.reclassified} reclassified, {report.already_done} already done, "
        f"{report.manual} manually fixed (left alone), {len(report.skipped)} skipped, of {report.images}"
    )
    for key, why in sorted(report.skipped.items()):
        out.print(f"  skipped {key}: {why}")


@train_app.command("sweep")
def train_sweep(
    dataset: Annotated[str, typer.Option(help="the dataset version (lotlens dataset create)")],
    configs: Annotated[Path, typer.Option(help="candidates and score weights (see configs/sweep.yaml)")],
    test: Annotated[list[Path] | None, typer.Option(help="an ad-hoc test manifest (repeatable)")] = None,
    test_images_root: Annotated[
        Path | None, typer.Option(help="folder the ad-hoc manifests' paths are relative to (default: theirs)")
    ] = None,
    workers: Annotated[int, typer.Option(help="candidates trained at once, each in its own process")] = 2,
) -> None:
    """Train 4 to 8 candidates in separate processes and compare them; writes a report."""
    from lotlens.train.sweep import run

    settings = Settings()
    try:
        with progress_bar() as bar:
            task = bar.add_task("candidates", total=None)
            result = run(
                settings, dataset, configs, test, test_images_root, workers, on_done=lambda _: bar.advance(task)
            )
    except LotlensError as exc:
        _fail(exc)
    sets = [("held-out advertisers (best first)", None), *((str(t), str(t)) for t in test or [])]
    for title, key in sets:
        table = Table(title=f"sweep {result.sweep} on {dataset}, scored on {title}")
        for col in ("candidate", "version", "score", "type acc", "placeholder", "color top-1", "worst advertiser"):
            table.add_column(col, overflow="fold")
        for r in result.rows:
            m = r if key is None else r["ad_hoc"][key]
            table.add_row(
                r["name"],
                r["version"],
                f"{m['score']:.3f}",
                _pct(m["type_accuracy"]),
                _pct(m["placeholder_recall"]),
                _pct(m["color_accuracy"]),
                f"{_pct(m['worst_group'])} {m['worst_group_name'] or ''}",
            )
        out.print(table)
        unreadable = max((r["ad_hoc"][key]["unreadable"] for r in result.rows), default=0) if key else 0
        if unreadable:
            out.print(f"[yellow]warning:[/yellow] {unreadable} image(s) of {key} unreadable: check --test-images-root")
    out.print(f"report: {result.folder / 'report.html'}")
    out.print(f"register the winner: lotlens models register {result.best['path']}")


@app.command()
def monitor(
    days: Annotated[int, typer.Option(help="days to look back")] = 14,
    recent_days: Annotated[int, typer.Option(help="the recent span compared with the days before it")] = 1,
    fix_rate_factor: Annotated[float, typer.Option(help="flag a fix rate this many times the baseline")] = 2.0,
    min_fix_rate: Annotated[float, typer.Option(help="...and at least this many fixes per 1,000")] = 5.0,
    mix_shift: Annotated[float, typer.Option(help="flag a type mix that moved by more than this share")] = 0.15,
) -> None:
    """Per model version and advertiser: answers, type mix, fixes per 1,000 answers; flags what moved."""
    from lotlens.train.monitor import watch

    w = watch(_open_store(Settings()), days, recent_days, fix_rate_factor, min_fix_rate, mix_shift)
    table = Table(title=f"last {recent_days} day(s) vs the {days - recent_days} before")
    for col in (
        "advertiser",
        "model",
        "answers",
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


def main() -> None:
    """Entry point of the `lotlens` script."""
    app()


if __name__ == "__main__":
    main()
