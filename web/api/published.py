"""Publishing (DESIGN section 18): the owner's publish and unpublish, and the public
`/apps/<slug>/` that serves the published version like a preview (web/api/preview.py)."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, request
from flask.typing import ResponseReturnValue

from orchestrator import contract, publishing
from orchestrator.errors import NotFound
from web.api.common import unit_of_work
from web.api.preview import serve
from web.auth import current_user_id
from web.endpoints import Api, Raw
from web.schemas import Publish
from web.state import state

bp = Api("published", __name__, tag="projects")


@bp.operation(
    "POST /api/projects/<project_id>/publish",
    answer=contract.Published,
    fails="404",
    body=Publish,
    body_required=False,
)
def publish(project_id: str, body: Publish) -> Any:
    """Publish a version (default: the latest) at the project's stable public URL."""
    with unit_of_work() as session:
        project = publishing.publish(
            session, current_user_id(), project_id, body.fragment_id, state().settings.public_url
        )
        return project.published


@bp.operation("DELETE /api/projects/<project_id>/publish", answer=contract.Project, fails="404")
def unpublish(project_id: str) -> Any:
    """Unpublish: the public URL answers 404 from now on; the project, `published` null."""
    with unit_of_work() as session:
        return publishing.unpublish(session, current_user_id(), project_id)


@bp.get("/apps/<slug>")
def app_root(slug: str) -> ResponseReturnValue:
    return redirect(request.path + "/", code=308)


@bp.get("/apps/<slug>/")
@bp.operation(
    "GET /apps/<slug>/<path:path>",
    answer=Raw(None, "The published app's file, with its content type"),
    fails="404",
    auth="public",
)
def app_file(slug: str, path: str = "") -> Any:
    """The project's published version, served as a site; an empty path is index.html."""
    with unit_of_work() as session:
        try:
            fragment_id = publishing.published_fragment(session, slug)
        except NotFound:
            abort(404)
    return serve(fragment_id, path)
