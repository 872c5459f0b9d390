"""Local previews: the web app serves a fragment's files, so a generated page opens in a browser."""

from __future__ import annotations

import mimetypes
from posixpath import normpath
from typing import Any

from flask import Response, abort, redirect, request
from flask.typing import ResponseReturnValue

from orchestrator import messages
from orchestrator.errors import NotFound
from web.api.common import unit_of_work
from web.endpoints import Api, Raw

bp = Api("preview", __name__, tag="fragments")

# The generated code runs on an opaque origin: it can script itself but never reach our API
# with a user's credentials or read another fragment's storage.
SANDBOX_POLICY = "sandbox allow-scripts allow-forms allow-modals allow-popups allow-downloads"


@bp.get("/preview/<fragment_id>")
def preview_root(fragment_id: str) -> ResponseReturnValue:
    return redirect(request.path + "/", code=308)


@bp.get("/preview/<fragment_id>/")
@bp.operation(
    "GET /preview/<fragment_id>/<path:path>",
    answer=Raw(None, "The file, with its content type"),
    fails="404",
    auth="public",
)
def preview(fragment_id: str, path: str = "") -> Any:
    """The fragment's files served as a site (the local sandbox's sandboxUrl); an empty path
    is index.html."""
    return serve(fragment_id, path)


def serve(fragment_id: str, path: str) -> Response:
    """One file of the app `fragment_id` serves, isolated: an opaque origin, no credentials."""
    wanted = normpath(path).lstrip("/") if path else ""
    candidates = [wanted, f"{wanted}/index.html"] if wanted not in ("", ".") else ["index.html"]
    with unit_of_work() as session:
        try:
            found = messages.public_fragment_file(session, fragment_id, candidates)
        except NotFound:
            abort(404)
    if found is None:
        abort(404)
    name, text = found
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if mime.startswith("text/") or mime in ("application/javascript", "application/json"):
        mime += "; charset=utf-8"
    response = Response(text, mimetype=None, content_type=mime)
    response.headers["Content-Security-Policy"] = SANDBOX_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    # The sandbox policy gives the page an opaque origin, so its module scripts (what Vite and
    # Angular builds emit) are CORS requests from `null`. A preview is public and takes no
    # credentials: letting any origin read it exposes nothing a plain GET does not.
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
