"""Checks every request passes before its view: text in the URL the databases cannot store.

PostgreSQL refuses NUL in text while SQLite stores it, so an id like `%00` would be a 500 on
one and a 404 on the other; refusing it up front makes both answer the same 400.
"""

from __future__ import annotations

from flask import Flask, request

from orchestrator.errors import InvalidRequest


def refuse_nul_in_url() -> None:
    args = request.args.items(multi=True)
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in args):
        raise InvalidRequest("The URL must not contain NUL characters")


def register(app: Flask) -> None:
    app.before_request(refuse_nul_in_url)
