"""`lotlens db upgrade`, `serve`, `config show`: running lotlens and what it runs on."""

from __future__ import annotations

import errno
import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from lotlens.cli.common import _announce, _database, _die, _fail, _open_store, _settings, app, out
from lotlens.config import Settings
from lotlens.errors import (
    LotlensError,
)

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
    # proxy_headers=False: the app reads forwarded headers itself, from LOTLENS_TRUSTED_PROXIES only.
    config = uvicorn.Config(
        create_app(settings), log_config=None, log_level=settings.log_level.lower(), proxy_headers=False
    )
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
        "storage": settings.resolved_storage_url(),
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
