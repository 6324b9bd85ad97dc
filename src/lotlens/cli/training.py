"""`lotlens train`, `train sweep`, `split` and `evaluate` (with `--compare`)."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lotlens.cli.common import _announce, _die, _fail, _json_line, _pct, _settings, app, err, out, progress_bar
from lotlens.errors import (
    LotlensError,
)

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
    whose bytes differ are replaced. Files the folder lacks (its card, say) are added either way.
    """
    from lotlens.vision.pipeline import MODEL_FILE

    def meta(folder: Path) -> dict[str, Any] | None:
        try:
            d = json.loads((folder / MODEL_FILE).read_text())
        except (OSError, ValueError):
            return None
        d.pop("created", None)
        return dict(d)

    same = meta(out_dir) == meta(new)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(new.iterdir(), key=lambda f: f.name == MODEL_FILE):  # model.json last: readers see it whole
        target = out_dir / f.name
        if same and target.exists():
            continue  # the same model: only files it lacks (a card, say) are added
        if not (target.is_file() and filecmp.cmp(f, target, shallow=False)):
            shutil.copyfile(f, target.with_name(target.name + ".partial"))
            os.replace(target.with_name(target.name + ".partial"), target)
    return not same


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
    from lotlens.train.card import read_training_images
    from lotlens.train.evaluate import evaluate as run_evaluate
    from lotlens.train.evaluate import evaluate_compare
    from lotlens.vision import Pipeline
    from lotlens.vision.pipeline import default_model_dir

    settings = _settings()
    if compare is not None:
        try:
            dir_a = model or settings.model_dir or default_model_dir()
            pipeline_a = Pipeline.load(dir_a, settings.threads)
            pipeline_b = Pipeline.load(compare, settings.threads)
            trained = tuple(
                read_training_images(d, (p.folder.meta.get("manifest") or {}).get("sha256"))
                for d, p in ((dir_a, pipeline_a), (compare, pipeline_b))
            )
            with progress_bar(not as_json) as bar:
                task = bar.add_task("evaluate a, then b", total=None)
                both = evaluate_compare(
                    pipeline_a,
                    pipeline_b,
                    manifest,
                    images_root,
                    on_step=lambda d, t: bar.update(task, completed=d, total=t),
                    trained_on=(trained[0], trained[1]),
                )
        except LotlensError as exc:
            _fail(exc)
        for side in ("a", "b"):
            _warn_overlap(both[side], f"model {side} ({both[side]['model']})")
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
        model_dir = model or settings.model_dir or default_model_dir()
        pipeline = Pipeline.load(model_dir, settings.threads)
        trained_on = read_training_images(model_dir, (pipeline.folder.meta.get("manifest") or {}).get("sha256"))
        with progress_bar(not as_json) as bar:
            task = bar.add_task("evaluate", total=None)
            result = run_evaluate(
                pipeline,
                manifest,
                images_root,
                on_step=lambda d, t: bar.update(task, completed=d, total=t),
                trained_on=trained_on,
            )
    except LotlensError as exc:
        _fail(exc)
    _warn_overlap(result)
    if report:
        from lotlens.train.report import write_report

        page = write_report(result, report)
        if not as_json:
            out.print(f"report: {page}")
    if as_json:
        _json_line(result)
        return
    _print_evaluation(result)


def _warn_overlap(r: dict[str, Any], which: str | None = None) -> None:
    """On stderr, so a --json reader still gets one clean line: how much of the test set the model
    (`which` of two, when comparing) was trained on."""
    overlap = r["training_overlap"]
    prefix, unseen = (f"{which}: ", "") if which else ("", " (the 'unseen' column)")
    if overlap is None:
        err.print(
            f"[yellow]warning:[/yellow] {prefix}the model folder has no training_images.json for its training "
            "manifest: whether these rows were in its training data is unknown"
        )
    elif overlap["shared"]:
        err.print(
            f"[yellow]warning:[/yellow] {prefix}{overlap['shared']} of {overlap['scored']} scored rows share their "
            f"image (sha256) with the model's training manifest: only the {overlap['scored'] - overlap['shared']} "
            f"unseen rows measure it{unseen}"
        )


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
    if r.get("color_located"):
        out.print("color read from: " + ", ".join(f"{k} {v}" for k, v in r["color_located"].items()))
    if r.get("unseen") is not None:
        both = Table(title="all scored rows against the rows the model never saw in training")
        for col in ("", "all", "unseen"):
            both.add_column(col, justify="left" if not col else "right")
        a, u = r["overall"], r["unseen"]
        both.add_row("type rows", str(a["n_type"]), str(u["n_type"]))
        both.add_row("type accuracy", _pct(a["type_accuracy"]), _pct(u["type_accuracy"]))
        both.add_row("placeholder recall", _pct(a["placeholder_recall"]), _pct(u["placeholder_recall"]))
        both.add_row("color rows", str(a["n_color"]), str(u["n_color"]))
        both.add_row("color top-1", _pct(a["color_accuracy"]), _pct(u["color_accuracy"]))
        out.print(both)
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
