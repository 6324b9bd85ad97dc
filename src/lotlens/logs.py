"""Logging, configured once at the edge (`configure`), and the request id every log line carries.

Modules only call `logging.getLogger(__name__)`; the CLI calls `configure` before any command runs,
`serve` included, so uvicorn's lines and ours share one format. An edge that handles a request sets
`request_id` (a contextvar, so it follows the request through `await` and `asyncio.to_thread`) and
every record logged meanwhile carries it as `record.request_id`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

request_id: ContextVar[str | None] = ContextVar("lotlens_request_id", default=None)

# Libraries that log every request or migration step at INFO: heard only at DEBUG.
CHATTY = ("httpx", "httpcore", "alembic")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
# LogRecord attributes that are not "extra" fields worth shipping in a JSON line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_tag",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


_CALLER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def accept_request_id(value: str | None) -> str:
    """The caller's request id when it is a plausible one (short, no spaces or control characters,
    so it cannot forge log lines), else a new random one."""
    return value if value and _CALLER_ID.match(value) else uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamp each record with the current request id (`None` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        record.request_id = rid
        record.request_tag = f" [{rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at the time of the record (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure(level: str = "INFO", fmt: Literal["text", "json"] = "text") -> logging.Handler:
    """Send log records of `level` and above to stderr, as text or JSON lines; idempotent.

    Replaces the handler an earlier call installed and leaves any other handler (a test
    runner's) alone.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)
    return handler
