"""The web page (DESIGN section 13): `GET /` serves one static page; its files are in web/static."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, send_from_directory
from flask.typing import ResponseReturnValue

bp = Blueprint("page", __name__)

# The page runs only its own scripts and styles, calls only its own API, and frames previews:
# the served ones (same origin, sandboxed by their own CSP) and E2B's on their own hosts.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; frame-src 'self' http: https:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@bp.get("/")
def index() -> ResponseReturnValue:
    folder = current_app.static_folder
    assert folder is not None  # web/static ships with the package
    response: Response = send_from_directory(folder, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
