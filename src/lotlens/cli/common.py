"""What every command shares: the app and its error table, settings, the database, progress, output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typer.core import TyperGroup

from lotlens.config import MASK, Settings
from lotlens.errors import (
    ConfigError,
    Conflict,
    FetchError,
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
        "storage": settings.resolved_storage_url(),
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


def _open_store(settings: Settings) -> Any:
    """The store, migrated; a database that cannot be used ends the command in one line."""
    from lotlens.store import Store

    with _database(settings):
        return Store.from_url(settings.resolved_database_url())


def _pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}%"  # None or NaN: nothing measured
