"""CORS for front ends on other origins (DESIGN section 13): `/api/*` only, the event stream too.

Nothing is allowed unless `CORS_ORIGINS` names the origin. Auth is a bearer token, never a
cookie, so credentials mode stays off; the headers a client sends and reads are listed.
"""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"]
EXPOSE_HEADERS = ["Retry-After", "X-Prev-Cursor", "X-Next-Cursor", "Link"]


def register(app: Flask, origins: tuple[str, ...]) -> None:
    if not origins:
        return
    CORS(
        app,
        resources={r"/api/*": {"origins": list(origins)}},
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        methods=["GET", "POST", "DELETE", "OPTIONS"],
        supports_credentials=False,
        max_age=600,
    )
