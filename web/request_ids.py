"""Request ids and the log context of a request (orchestrator/logs.py does the formatting)."""

from __future__ import annotations

from flask import Flask, Response, request

from orchestrator import logs

HEADER = "X-Request-ID"


def register(app: Flask) -> None:
    @app.before_request
    def start() -> None:
        # A fresh context per request: nothing of what this thread or greenlet served before.
        view_args = request.view_args or {}
        logs.set_fields(
            request_id=logs.request_id(request.headers.get(HEADER)),
            user_id=None,
            message_id=view_args.get("message_id"),
            run_id=None,
        )

    @app.after_request
    def answer(response: Response) -> Response:
        rid = logs.current().get("request_id")
        if rid:
            response.headers[HEADER] = rid
        return response
