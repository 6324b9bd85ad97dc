"""`lotlens fix` and the model registry: `models register|list|show|promote|rollback`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lotlens.cli.common import _die, _fail, _json_line, _open_store, _pct, _settings, app, out
from lotlens.errors import LotlensError, StorageError
from lotlens.storage import Storage


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
    """Copy a model folder into the registry (`models/<version>` in the storage root)."""
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
    out.print(f"registered {rec.version} at {rec.path} in {settings.resolved_storage_url()}")


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


@models_app.command("card")
def models_card(
    model: Annotated[str, typer.Argument(help="a registered version, or a model folder")],
    as_json: Annotated[bool, typer.Option("--json", help="print the card as one line of JSON")] = False,
    write: Annotated[
        bool, typer.Option("--write", help="a folder only: (re)write its card.json and model_card.md from model.json")
    ] = False,
    training_manifest: Annotated[
        Path | None,
        typer.Option(help="with --write: the manifest it was trained on, for training_images.json (sha256 checked)"),
    ] = None,
    images_root: Annotated[Path | None, typer.Option(help="folder the training manifest's paths are in")] = None,
) -> None:
    """A model's card: data, metrics per class and per source, intended use, known limits."""
    import json

    from lotlens.train.card import CARD_JSON, card_markdown, make_card, write_card, write_training_images
    from lotlens.train.manifest import manifest_sha256
    from lotlens.vision.pipeline import MODEL_FILE

    folder = Path(model)
    if not (folder / MODEL_FILE).is_file():
        if write:
            raise _die(f"--write needs a model folder; {model} is not one (registered folders never change)")
        settings = _settings()
        rec = _registry().get(model)
        if rec is None:
            raise _die(f"unknown model {model} (neither a registered version nor a model folder)")
        try:
            folder = Storage.from_settings(settings).local_folder(rec.path)
        except StorageError as exc:
            raise _die(str(exc)) from None
    try:
        meta = json.loads((folder / MODEL_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise _die(f"cannot read {folder / MODEL_FILE}: {exc}") from None
    if write:
        if training_manifest is not None:
            expected = (meta.get("manifest") or {}).get("sha256")
            try:
                found = manifest_sha256(training_manifest)
            except OSError as exc:
                raise _die(f"cannot read {training_manifest}: {exc.strerror}") from None
            if found != expected:
                raise _die(f"{training_manifest} is not the manifest {folder} was trained on (sha256 differs)")
            n = write_training_images(folder, training_manifest, images_root)
            out.print(f"wrote {folder / 'training_images.json'} ({n} images)")
        card = write_card(folder, meta)
        out.print(f"wrote {folder / CARD_JSON} and {folder / 'model_card.md'}")
        return
    try:
        card = json.loads((folder / CARD_JSON).read_text())
    except (OSError, ValueError):
        card = make_card(meta)  # a folder from before cards: the same card, made now
    if as_json:
        _json_line(card)
        return
    out.print(card_markdown(card), markup=False, highlight=False)
