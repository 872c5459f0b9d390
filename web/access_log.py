"""Gunicorn's access log without credentials: the Procfile's `--logger-class` for the web line.

Browsers' EventSource carries its events token in `?token=` (DESIGN section 6), and gunicorn's
request line (`%(r)s`), query (`%(q)s`), referer and environment atoms would write it out. Every
atom is redacted here, so no log format an operator picks can print a token (DESIGN section 15).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
# `token=`, `access_token=`, `id_token=` … in a query string, and anything shaped like a JWT.
_QUERY_TOKEN = re.compile(r"(?i)(\w*token=)[^&\s\"]*")
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
_SECRET_HEADERS = ("{authorization}i", "{cookie}i", "{http_authorization}e", "{http_cookie}e")


def redact(text: str) -> str:
    return _JWT.sub(REDACTED, _QUERY_TOKEN.sub(rf"\1{REDACTED}", text))


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with every access-log atom scrubbed of tokens."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if isinstance(value, str):
                atoms[name] = redact(value)
        for name in _SECRET_HEADERS:
            if name in atoms:
                atoms[name] = REDACTED
        return atoms


class RedactingFilter(logging.Filter):
    """The same scrubbing for werkzeug's request lines (`flask run`, the tests' server)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = redact(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def install_filter() -> None:
    target = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())
