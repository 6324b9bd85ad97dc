"""`lotlens jobs submit|status|results|cancel` (through the HTTP API of a running server) and
`lotlens worker` (a Celery worker that runs job chunks)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lotlens.cli.common import _die, out, progress_bar
from lotlens.config import Settings

jobs_app = typer.Typer(
    no_args_is_help=True,
    help="Whole inventories as jobs, through a running server (LOTLENS_API_URL, LOTLENS_API_KEY).",
)
TERMINAL = ("done", "failed", "cancelled")
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


class Api:
    """The few calls the commands make; an HTTP error ends the command with the server's reason."""

    def __init__(self, settings: Settings) -> None:
        import httpx

        key = settings.api_key.get_secret_value() if settings.api_key else None
        self.client = httpx.Client(
            base_url=settings.api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=60,
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            res = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise _die(f"{self.client.base_url}: {exc}") from exc
        if res.status_code >= 400:
            try:
                detail = res.json().get("detail", res.text)
            except ValueError:
                detail = res.text
            raise _die(f"{res.status_code}: {detail}")
        return res.json()


def _print_status(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(data=job)
        return
    line = f"job {job['id']} [{job['advertiser']}]: {job['status']}, {job['processed']}/{job['total']} processed"
    out.print(f"{line}, {job['ok']} ok, {job['skipped']} skipped")
    if job.get("error"):
        out.print(f"error: {job['error']}")
    hook = job.get("webhook")
    if hook:
        out.print(f"webhook {hook['url']}: {hook['status']} after {hook['attempts']} tries; last: {hook['last']}")


@jobs_app.command("submit")
def submit(
    advertiser: Annotated[str, typer.Option(help="the advertiser whose images these are")],
    from_file: Annotated[str, typer.Option(help="a file with one image URL a line, or - for stdin")],
    webhook: Annotated[str | None, typer.Option(help="POST a signed job.finished event here when it ends")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="the same key within 24 h returns the same job")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the job to end, with a progress bar")] = False,
    as_json: AsJson = False,
) -> None:
    """Queue an advertiser's image URLs as one job; prints its id (and waits for it with --wait)."""
    text = sys.stdin.read() if from_file == "-" else Path(from_file).read_text()
    urls = [u.strip() for u in text.splitlines() if u.strip() and not u.startswith("#")]
    body: dict[str, Any] = {"advertiser": advertiser, "images": [{"url": u} for u in urls]}
    if webhook:
        body["webhook_url"] = webhook
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with Api(Settings()) as api:
        job = api.call("POST", "/v1/jobs", json=body, headers=headers)
        if wait:
            job = _wait(api, job, show=not as_json)
    _print_status(job, as_json)
    if job["status"] == "failed":
        raise typer.Exit(1)


def _wait(api: Api, job: dict[str, Any], show: bool) -> dict[str, Any]:
    with progress_bar(show) as bar:
        task = bar.add_task(f"job {job['id']}", total=job["total"])
        while job["status"] not in TERMINAL:
            time.sleep(1.0)
            job = api.call("GET", f"/v1/jobs/{job['id']}")
            bar.update(task, completed=job["processed"])
    return job


@jobs_app.command("status")
def status(job_id: Annotated[str, typer.Argument(help="the job id")], as_json: AsJson = False) -> None:
    """A job's status and counters, and its webhook's deliveries."""
    with Api(Settings()) as api:
        _print_status(api.call("GET", f"/v1/jobs/{job_id}"), as_json)


@jobs_app.command("results")
def results(job_id: Annotated[str, typer.Argument(help="the job id")], as_json: AsJson = False) -> None:
    """Every answer so far, in input order (--json: a JSON list of /v1/classify's objects)."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = "0"
    with Api(Settings()) as api:
        while cursor is not None:
            page = api.call("GET", f"/v1/jobs/{job_id}/results", params={"cursor": cursor, "limit": 1000})
            rows += page["results"]
            cursor = page["next_cursor"] if page["results"] else None
    if as_json:
        out.print(json.dumps(rows, indent=1), soft_wrap=True)
        return
    table = Table(title=f"job {job_id}")
    for col in ("url", "type", "color", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if r["status"] == "ok":
            table.add_row(r["url"], r["type"], r["color"] or "", r["source"])
        else:
            table.add_row(r["url"], f"skipped: {r['reason']}", "", "")
    out.print(table)


@jobs_app.command("cancel")
def cancel(job_id: Annotated[str, typer.Argument(help="the job id")], as_json: AsJson = False) -> None:
    """Cancel a job: its chunks not started never run."""
    with Api(Settings()) as api:
        _print_status(api.call("DELETE", f"/v1/jobs/{job_id}"), as_json)


def worker(
    concurrency: Annotated[int, typer.Option(help="processes, each with its own model (one per core)")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery's log level")] = "info",
    beat: Annotated[
        bool, typer.Option("--beat", help="also run Celery beat: the daily monitor (one per fleet)")
    ] = False,
) -> None:
    """A Celery worker that runs job chunks (LOTLENS_BROKER_URL; the store is LOTLENS_DATABASE_URL)."""
    from lotlens.jobs.worker import make_celery
    from lotlens.store import make_engine, upgrade

    settings = Settings()
    if not settings.broker_url:
        raise _die("set LOTLENS_BROKER_URL (amqp://... or redis://...) to run workers")
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)  # once here, before the worker processes fork and open their own connections
    engine.dispose()
    make_celery(settings).worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--pool=prefork",
            f"--hostname=lotlens-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            *(["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"] if beat else []),
        ]
    )


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.command()(worker)
