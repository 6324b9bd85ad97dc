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


def _fail(exc: LotlensError) -> None:
    err.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


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
    sources: Annotated[list[str], typer.Argument(help="image files or http(s) URLs", metavar="PATH_OR_URL...")],
    model: Annotated[Path | None, typer.Option(help="model folder (default: the bundled model)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list instead of a table")] = False,
) -> None:
    """Tell the type and color of each image.

    Images that cannot be read or decoded are skipped with a reason and do not fail the run (exit 0);
    a missing or broken model exits 2.
    """
    from lotlens.imaging import decode
    from lotlens.vision import Pipeline

    settings = Settings()
    try:
        pipeline = Pipeline.load(model or settings.model_dir, settings.threads, settings.batch_size)
    except LotlensError as exc:
        _fail(exc)
    results: list[dict[str, Any]] = []
    with progress_bar(len(sources) > 1) as bar:
        task = bar.add_task("classify", total=len(sources))
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
            bar.advance(task, len(chunk))
    if as_json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return
    table = Table(title=f"model {pipeline.version}")
    table.add_column("image", overflow="fold")
    for col in ("type", "p", "color", "p ", "crop"):
        table.add_column(col, justify="right" if col.startswith("p") else "left")
    for r in results:
        if r["status"] != "ok":
            table.add_row(r["source"], f"[yellow]skipped: {r['reason']}[/yellow]", "", "", "", "")
            continue
        tp, cp = r["scores"]["type"][r["type"]], r["scores"]["color"].get(r["color"])
        table.add_row(
            r["source"],
            r["type"],
            f"{tp:.2f}",
            r["color"] or "-",
            "" if cp is None else f"{cp:.2f}",
            r["box_source"] if r["box"] else "whole image" if r["color"] else "-",
        )
    out.print(table)


@app.command()
def train(
    manifest: Annotated[Path, typer.Option(help="CSV: path,type,color,group")],
    out_dir: Annotated[Path, typer.Option("--out", help="model folder to write")],
    images_root: Annotated[Path | None, typer.Option(help="folder the manifest's paths are relative to")] = None,
    seed: Annotated[int, typer.Option(help="random seed (split, generators, fit)")] = 0,
    generated_placeholders: Annotated[int, typer.Option(help="generated placeholder graphics to add")] = 300,
    name: Annotated[str, typer.Option(help="model name, the prefix of its version")] = "lotlens",
) -> None:
    """Train type and color heads on a manifest and write a model folder."""
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
) -> None:
    """Score a model on a labelled manifest: accuracy, recall, confusion, per-group accuracy."""
    from lotlens.train.evaluate import evaluate as run_evaluate
    from lotlens.vision import Pipeline

    settings = Settings()
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
    return "-" if v is None else f"{100 * v:.1f}%"


def _print_evaluation(r: dict[str, Any]) -> None:
    t, c = r["type"], r["color"]
    out.print(
        f"model {r['model']} on {r['manifest']['path']} ({r['manifest']['rows']} rows, {len(r['skipped'])} unreadable)"
    )
    out.print(f"type:  n={t['n']}  accuracy {_pct(t['accuracy'])}  placeholder recall {_pct(r['placeholder_recall'])}")
    out.print(f"color: n={c['n']}  top-1 {_pct(c['accuracy'])}  top-2 {_pct(c['top2'])}")
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


def main() -> None:
    """Entry point of the `lotlens` script."""
    app()


if __name__ == "__main__":
    main()
