"""The web side of the metrics: requests by route and status, and the /metrics answer."""

from __future__ import annotations

from flask import Flask, Response, request

from orchestrator import metrics


def register(app: Flask) -> None:
    @app.after_request
    def count(response: Response) -> Response:
        # The URL rule, not the raw path: one series per route, whatever the ids in it.
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"
        metrics.HTTP_REQUESTS.labels(route=route, status=str(response.status_code)).inc()
        return response


def answer() -> Response:
    """Every web process's metrics under gunicorn (multiprocess mode), else this process's."""
    return Response(metrics.render(), mimetype=metrics.CONTENT_TYPE)
