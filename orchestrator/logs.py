"""Logs an operator can search: JSON lines carrying the request, user, message and run ids.

The ids live in context variables, set where a request or a run starts (`bind`), so every line
written while it goes on carries them, from whatever logger (ours, Celery's, the libraries'). A
filter copies them onto each record; with LOG_FORMAT=json (`configure`) the root handler writes
one JSON object per line, else the usual text format is kept. A thread started during a run does
not inherit them (Python's rule for threads): such lines go out without the ids.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

FIELDS = ("request_id", "user_id", "message_id", "run_id")
_VARS: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"appforge_{name}", default=None) for name in FIELDS
}
# What a client may pass as X-Request-ID: a proxy's id, a UUID; anything else gets a new id.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def current() -> dict[str, str]:
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


def set_fields(**fields: str | None) -> None:
    """Sets (or, with None, clears) ids for what this request or run does from now on."""
    for name, value in fields.items():
        _VARS[name].set(value)


@contextlib.contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def request_id(offered: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a new one."""
    if offered and _REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Puts the current ids on every record (None when unset), for any formatter to use."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = _VARS[name].get()
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: str, level: str | None = None) -> None:
    """LOG_FORMAT=json: the root logger writes JSON lines to stderr; text: as it was, plus ids.

    Idempotent: a second call replaces our handler instead of adding one.
    """
    root = logging.getLogger()
    if level:
        root.setLevel(level)
    for handler in root.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
    if log_format != "json":
        return
    logging.captureWarnings(True)  # warnings.warn() becomes a JSON line too
    ours = next((h for h in root.handlers if getattr(h, "appforge_json", False)), None)
    if ours is None:
        ours = logging.StreamHandler(sys.stderr)
        ours.appforge_json = True  # type: ignore[attr-defined]
        ours.addFilter(ContextFilter())
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream in (
                sys.stderr,
                sys.stdout,
            ):
                root.removeHandler(handler)  # one format per line on the console
        root.addHandler(ours)
    ours.setFormatter(JsonFormatter())
