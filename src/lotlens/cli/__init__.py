"""The command line: `lotlens classify | train | evaluate | split`."""

from __future__ import annotations

import errno
import filecmp
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup

from lotlens.config import MASK, Settings
from lotlens.errors import (
    ConfigError,
    Conflict,
    FetchError,
    ImageDecodeError,
    InvalidInput,
    LotlensError,
    NotFound,
    PermissionDenied,
)

# The CLI's one table of domain errors: what the message starts with, and the exit status.
EXIT_CODES: dict[type[LotlensError], tuple[str, int]] = {
    NotFound: ("not found", 3),
    PermissionDenied: ("not allowed", 4),
    Conflict: ("conflict", 5),
    InvalidInput: ("invalid", 2),
}


class _Commands(TyperGroup):
    """Every command runs inside this: a domain error is one line on stderr and its exit status."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LotlensError as exc:
            found = (entry for kind, entry in EXIT_CODES.items() if isinstance(exc, kind))
            label, status = next(found, ("error", 2))
            err.print(f"[red]{label}:[/red] {exc}", highlight=False)
            raise typer.Exit(status) from exc


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    help="Type and color tags for inventory photos.",
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger(__name__)
UNBOUNDED_WIDTH = 100_000


def _print_version(value: bool) -> None:
    if value:
        from lotlens import __version__

        out.print(f"lotlens {__version__}")
        raise typer.Exit()


@app.callback()
def _every_command(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Type and color tags for inventory photos."""
    from lotlens import config, logs

    if not out.is_terminal:
        # A file or a pipe has no width: size tables to their content instead of folding every
        # path over three lines at rich's default of 80 columns.
        out.width = UNBOUNDED_WIDTH

    try:
        settings = config.load()
    except ConfigError:
        logs.configure()  # the command reports the wrong setting when it reads the settings
    else:
        logs.configure(settings.log_level, settings.log_format)


def _announce(command: str, settings: Settings, model: str | None = None, **more: Any) -> None:
    """Log, at the start of long work, what it uses: database (password masked), data folder, model."""
    uses = {
        "database": settings.database_for_display(),
        "data_dir": str(settings.data_dir.resolve()),
        "model": model or "-",
        **{k: str(v) for k, v in more.items()},
    }
    log.info("%s: %s", command, ", ".join(f"{k} {v}" for k, v in uses.items()), extra={"command": command, **uses})


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr; where stderr is not a terminal (a log file, CI, a pipe), a log
    line per task every `_LoggedProgress.EVERY` seconds instead. Nothing when `enabled` is False."""
    if enabled and not err.is_terminal:
        yield _LoggedProgress()
        return
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


class _LoggedProgress:
    """The part of rich's `Progress` the commands use, as log lines: long work stays visible in logs."""

    EVERY = 10.0

    def __init__(self) -> None:
        self._tasks: dict[int, dict[str, Any]] = {}

    def add_task(self, description: str, total: float | None = None) -> int:
        self._tasks[len(self._tasks)] = {"name": description, "done": 0.0, "total": total, "logged": None}
        self.update(len(self._tasks) - 1)  # a first line at once: the work has started
        return len(self._tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(
        self, task: int, completed: float | None = None, total: float | None = None, advance: float | None = None
    ) -> None:
        import time

        t = self._tasks[task]
        t["total"] = t["total"] if total is None else total
        t["done"] = completed if completed is not None else t["done"] + (advance or 0)
        finished = t["total"] is not None and t["done"] >= t["total"]
        now = time.monotonic()
        if t["logged"] is None or finished or now - t["logged"] >= self.EVERY:
            if finished and t.get("finished"):
                return
            t["logged"], t["finished"] = now, finished
            log.info("%s: %d/%s", t["name"], t["done"], "?" if t["total"] is None else int(t["total"]))


def _die(message: str) -> typer.Exit:
    """Print `message` as an error; the caller raises what this returns (exit status 2)."""
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def _settings() -> Settings:
    """The settings, read once per command at this edge; a wrong setting ends the command in one line."""
    from lotlens import config

    try:
        return config.load()
    except ConfigError as exc:
        raise _die(str(exc)) from None


@contextmanager
def _database(settings: Settings, files: bool = True) -> Iterator[None]:
    """Turn a database that cannot be reached or migrated into one line naming the setting, password
    masked. `files`: an OSError is the database's too (SQLite's folder), not some other file's."""
    from sqlalchemy.exc import SQLAlchemyError

    caught: tuple[type[Exception], ...] = (SQLAlchemyError, ModuleNotFoundError, *((OSError,) if files else ()))
    try:
        yield
    except caught as exc:
        cause = getattr(exc, "orig", None) or exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        from sqlalchemy.engine import make_url

        password = make_url(settings.resolved_database_url()).password
        if password:
            reason = reason.replace(str(password), MASK)
        raise _die(f"LOTLENS_DATABASE_URL: cannot use {settings.database_for_display()}: {reason}") from None


def _fail(exc: LotlensError) -> None:
    raise _die(str(exc))


def _json_line(obj: Any) -> None:
    """One result as one line of JSON (JSON Lines), flushed at once so a reader sees it as it comes."""
    sys.stdout.write(json.dumps(obj, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> str:
    """Times as ISO 8601, anything else (paths) as its text."""
    from datetime import datetime

    return value.isoformat() if isinstance(value, datetime) else str(value)


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
            from lotlens.train.registry import Champion

            pipeline = Champion(settings, store)()  # the registry's champion, else the configured model
        else:
            pipeline = Pipeline.load(model or settings.model_dir, settings.threads, settings.batch_size)
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


def _open_store(settings: Settings) -> Any:
    """The store, migrated; a database that cannot be used ends the command in one line."""
    from lotlens.store import Store

    with _database(settings):
        return Store.from_url(settings.resolved_database_url())


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
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one line of JSON")] = False,
) -> None:
    """Train type and color heads on a manifest and write a model folder."""
    if ctx.invoked_subcommand:
        return
    if manifest is None or out_dir is None:
        raise _die("lotlens train needs --manifest and --out (or a subcommand: sweep)")
    from lotlens.train.fit import TrainConfig
    from lotlens.train.fit import train as run_train

    cfg = TrainConfig(seed=seed, generated_placeholders=generated_placeholders, name=name)
    _announce("train", _settings(), None, manifest=manifest.resolve(), out=out_dir.resolve(), seed=seed)
    try:
        with progress_bar() as bar:
            tasks: dict[str, Any] = {}

            def step(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=total)
                bar.update(tasks[phase], completed=done, total=total)

            out_dir.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}-") as tmp:
                folder = run_train(manifest, Path(tmp), images_root, cfg, on_step=step)
                changed = _move_if_changed(Path(tmp), out_dir)
    except LotlensError as exc:
        _fail(exc)
    m = folder.meta["metrics"]
    if as_json:
        _json_line({"path": out_dir, "version": folder.version, "changed": changed, "metrics": m})
        return
    out.print(f"wrote {out_dir} ({folder.version})" if changed else f"{out_dir} unchanged ({folder.version})")
    if m:
        out.print(
            f"validation: type accuracy {m['type']['accuracy']:.3f}, placeholder recall "
            f"{m['type']['recall'].get('Placeholder', float('nan')):.3f}, color top-1 {m['color']['accuracy']:.3f}"
        )


def _move_if_changed(new: Path, out_dir: Path) -> bool:
    """Put the freshly trained folder `new` at `out_dir`, unless it holds the same model already.

    The same model is the same model.json apart from its `created` time (the version is a digest
    of the heads, so equal metadata means equal weights): then nothing in `out_dir` is touched, so
    retraining a tracked model folder on unchanged data leaves git clean. Otherwise only files
    whose bytes differ are replaced.
    """
    from lotlens.vision.pipeline import MODEL_FILE

    def meta(folder: Path) -> dict[str, Any] | None:
        try:
            d = json.loads((folder / MODEL_FILE).read_text())
        except (OSError, ValueError):
            return None
        d.pop("created", None)
        return dict(d)

    if meta(out_dir) == meta(new):
        return False
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(new.iterdir(), key=lambda f: f.name == MODEL_FILE):  # model.json last: readers see it whole
        target = out_dir / f.name
        if not (target.is_file() and filecmp.cmp(f, target, shallow=False)):
            shutil.copyfile(f, target.with_name(target.name + ".partial"))
            os.replace(target.with_name(target.name + ".partial"), target)
    return True


@app.command()
def split(
    manifest: Annotated[Path, typer.Option(help="CSV: path,type,color,group")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for train.csv and test.csv")],
    test_size: Annotated[float, typer.Option(help="share of rows held out")] = 0.3,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one line of JSON")] = False,
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
    if as_json:
        _json_line(
            {
                "train": {"path": out_dir / "train.csv", "rows": len(train_idx)},
                "test": {"path": out_dir / "test.csv", "rows": len(test_idx)},
            }
        )
        return
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

    settings = _settings()
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
            _json_line(both)
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
        _json_line(result)
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

    settings = _settings()
    with _database(settings):
        engine = make_engine(settings.resolved_database_url())
        upgrade(engine)
        engine.dispose()
    out.print(f"database at {settings.database_for_display()} is up to date")
    bundled = _register_default(settings)
    if bundled is not None:
        out.print(f"registered {bundled.version} as the champion (the model served before any promotion)")


def _register_default(settings: Settings) -> Any:
    """The bundled (or configured) model as first registry entry and champion; None when a champion exists."""
    from lotlens.train.registry import register_default

    store = _open_store(settings)
    try:
        with _database(settings, files=False):
            return register_default(store, settings)
    except LotlensError as exc:
        _fail(exc)
    except OSError as exc:
        raise _die(
            f"LOTLENS_DATA_DIR: cannot copy the model into {settings.data_dir.resolve()}: {exc.strerror}"
        ) from None
    finally:
        store.engine.dispose()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default LOTLENS_HOST, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default LOTLENS_PORT, 8000)")] = None,
) -> None:
    """Run the HTTP API (OpenAPI at /docs) and the review pages (/). Without API keys it binds to
    localhost only."""
    import ipaddress

    import uvicorn

    from lotlens.store.registry import Registry
    from lotlens.web import create_app

    settings = _settings()
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
    _register_default(settings)  # a database that cannot be reached fails here, in one line
    store = _open_store(settings)
    champion = Registry(store).alias("champion")
    store.engine.dispose()
    sock = _listen(bind, settings.port if port is None else port, "--port" if port is not None else "LOTLENS_PORT")
    where = sock.getsockname()
    _announce("serve", settings, champion or _configured_model(settings), listening=f"{where[0]}:{where[1]}")
    # log_config=None: uvicorn's loggers propagate to the handler `logs.configure` installed.
    config = uvicorn.Config(create_app(settings), log_config=None, log_level=settings.log_level.lower())
    uvicorn.Server(config).run(sockets=[sock])


def _configured_model(settings: Settings) -> str:
    """The version of LOTLENS_MODEL_DIR (default: the bundled model), without loading it."""
    from lotlens.vision.pipeline import ModelFolder, default_model_dir

    try:
        return ModelFolder.read(settings.model_dir or default_model_dir()).version
    except LotlensError as exc:
        return f"unreadable: {exc}"


def _listen(host: str, port: int, setting: str) -> Any:
    """A listening socket on host:port, bound here so that a taken or invalid port is one clear line."""
    import socket

    if not 0 < port < 65536:
        raise _die(f"{setting}: {port} is not a port (1 to 65535)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise _die(f"LOTLENS_HOST: cannot resolve {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise _die(f"{setting}: {host}:{port} is already in use") from None
        raise _die(f"{setting}: cannot bind {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


config_app = typer.Typer(no_args_is_help=True, help="The settings in effect.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """The resolved settings (environment, .env, secrets folder, defaults), secrets masked, and where
    state lives."""
    from lotlens.vision.pipeline import default_model_dir

    settings = _settings()
    model_dir = (settings.model_dir or default_model_dir()).resolve()
    model = _configured_model(settings)
    where = {
        "data_dir": str(settings.data_dir.resolve()),
        "database": settings.database_for_display(),
        "model_dir": str(model_dir),
        "model_version": model,
    }
    if as_json:
        sys.stdout.write(json.dumps({"state": where, "settings": settings.for_display()}) + "\n")
        return
    for key, value in where.items():
        out.print(f"{key:<14} {escape(str(value))}")
    out.print()
    for name, value in settings.for_display().items():
        out.print(f"{name}={escape(value if isinstance(value, str) else json.dumps(value))}")


@app.command()
def fix(
    image_key: Annotated[str, typer.Argument(help="the image key (c:...) from classify --json or the API")],
    advertiser: Annotated[str | None, typer.Option(help="whose view the fix changes")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="the right type")] = None,
    color: Annotated[str | None, typer.Option(help="the right color ('none' for no color)")] = None,
    scope: Annotated[str, typer.Option(help="advertiser | global")] = "advertiser",
    actor: Annotated[str, typer.Option(help="who makes the fix (recorded in the history)")] = "cli",
    comment: Annotated[str | None, typer.Option(help="why")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one object per field fixed")] = False,
) -> None:
    """Record a manual fix as staff, under the same rules and checks as the API (all fields or none);
    it is never overwritten by the model and goes into the history."""
    from lotlens.access import Access, FixRequest, Principal

    if type_ is None and color is None:
        raise _die("give --type and/or --color")
    given = (("type", type_), ("color", color))
    changes = {f: (None if f == "color" and v.lower() == "none" else v) for f, v in given if v}
    store = _open_store(_settings())
    try:
        _, rows = Access(store).record_fix(
            Principal(actor, "staff"), FixRequest(image_key, changes, advertiser, scope, comment)
        )
    finally:
        store.engine.dispose()
    for rec in rows:
        if as_json:
            _json_line(asdict(rec))
        else:
            out.print(f"{rec.field}: {rec.old_value} -> {rec.new_value} ({rec.scope}, by {rec.actor})")


models_app = typer.Typer(no_args_is_help=True, help="The model registry: register, promote, roll back.")
app.add_typer(models_app, name="models")


def _registry() -> Any:
    from lotlens.store.registry import Registry

    return Registry(_open_store(_settings()))


@models_app.command("register")
def models_register(
    model_dir: Annotated[Path, typer.Argument(help="a model folder written by `lotlens train`")],
    actor: Annotated[str, typer.Option(help="who registers it")] = "cli",
    dataset: Annotated[str | None, typer.Option(help="the dataset version it was trained on")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one line of JSON")] = False,
) -> None:
    """Copy a model folder into the registry (`<data_dir>/models/<version>`)."""
    from lotlens.train.registry import register

    settings = _settings()
    store = _open_store(settings)
    try:
        rec = register(store, model_dir, settings, actor, dataset)
    except LotlensError as exc:
        _fail(exc)
    if as_json:
        _json_line(asdict(rec))
        return
    out.print(f"registered {rec.version} at {rec.path}")


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one object per line")] = False,
) -> None:
    """Registered models with their validation metrics and aliases."""
    reg = _registry()
    aliases = {v: a for a, v in reg.aliases().items()}
    if as_json:
        for m in reg.models():
            _json_line(asdict(m) | {"alias": aliases.get(m.version)})
        return
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
    """One model's record and the promotions that involved it, as one line of JSON."""
    reg = _registry()
    rec = reg.get(version)
    if rec is None:
        raise _die(f"unknown model {version}")
    history = [asdict(p) for p in reg.history() if version in (p.to_version, p.from_version)]
    _json_line({"model": asdict(rec), "promotions": history})


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="a registered version")],
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    actor: Annotated[str, typer.Option(help="who promotes (recorded)")] = "cli",
    alias: Annotated[str, typer.Option(help="champion | challenger")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one line of JSON")] = False,
) -> None:
    """Point an alias at a model; running servers switch within LOTLENS_MODEL_POLL_SECONDS."""
    rec = _registry().promote(version, actor=actor, reason=reason, alias=alias)
    if as_json:
        _json_line(asdict(rec))
        return
    out.print(f"{rec.alias}: {rec.from_version} -> {rec.to_version}")


@models_app.command("rollback")
def models_rollback(
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    actor: Annotated[str, typer.Option(help="who rolls back (recorded)")] = "cli",
    alias: Annotated[str, typer.Option(help="champion | challenger")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one line of JSON")] = False,
) -> None:
    """Point an alias back at the model it had before its latest change."""
    rec = _registry().rollback(actor=actor, reason=reason, alias=alias)
    if as_json:
        _json_line(asdict(rec))
        return
    out.print(f"{rec.alias}: {rec.from_version} -> {rec.to_version} (rollback)")


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
    from lotlens.train.reclassify import reclassify as run_reclassify
    from lotlens.train.registry import Champion

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


def _count_candidates(configs: Path) -> int | None:
    """How many candidates the sweep config lists (for the progress total); None when unreadable,
    and the sweep itself then says why."""
    import yaml

    try:
        return len(yaml.safe_load(configs.read_text())["candidates"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


@train_app.command("sweep")
def train_sweep(
    dataset: Annotated[str, typer.Option(help="the dataset version (lotlens dataset create)")],
    configs: Annotated[Path, typer.Option(help="candidates and score weights (see configs/sweep.yaml)")],
    test: Annotated[list[Path] | None, typer.Option(help="an ad-hoc test manifest (repeatable)")] = None,
    test_images_root: Annotated[
        Path | None, typer.Option(help="folder the ad-hoc manifests' paths are relative to (default: theirs)")
    ] = None,
    workers: Annotated[int, typer.Option(help="candidates trained at once, each in its own process")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one object per candidate, best first")] = False,
) -> None:
    """Train 4 to 8 candidates in separate processes and compare them; writes a report."""
    from lotlens.train.sweep import run

    settings = _settings()
    _announce("train sweep", settings, None, dataset=dataset, configs=configs.resolve(), workers=workers)
    try:
        with progress_bar() as bar:
            task = bar.add_task("candidates trained", total=_count_candidates(configs))
            result = run(
                settings, dataset, configs, test, test_images_root, workers, on_done=lambda _: bar.advance(task)
            )
    except LotlensError as exc:
        _fail(exc)
    if as_json:
        for row in result.rows:
            _json_line({"sweep": result.sweep, "dataset": dataset, **row})
        return
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
    as_json: Annotated[
        bool, typer.Option("--json", help='JSON Lines: one object per advertiser and model, then {"flag": ...} lines')
    ] = False,
) -> None:
    """Per model version and advertiser: answers, type mix, fixes per 1,000 answers; flags what moved."""
    from lotlens.store.registry import Registry
    from lotlens.train.monitor import watch

    settings = _settings()
    store = _open_store(settings)
    _announce("monitor", settings, Registry(store).alias("champion"), days=days)
    w = watch(store, days, recent_days, fix_rate_factor, min_fix_rate, mix_shift)
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


from lotlens.cli import jobs as _jobs  # noqa: E402 -- its commands use the helpers above

_jobs.register(app)


def main() -> None:
    """Entry point of the `lotlens` script."""
    app()


if __name__ == "__main__":
    main()
