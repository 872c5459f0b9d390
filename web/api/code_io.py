"""Code in and out (DESIGN section 18): imports of a Git repository, a version's zip, and a
version pushed to a Git remote. Owner-only."""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context

from orchestrator import contract, messages
from orchestrator.imports import handoff, start
from orchestrator.versions.archive import zip_stream
from orchestrator.versions.push import PushRequest, push_version
from web.api.common import unit_of_work
from web.auth import current_user_id
from web.endpoints import Api, Raw
from web.schemas import PushFragment, StartImport
from web.state import state
from workers.dispatch import enqueue_import

bp = Api("code_io", __name__, tag="code")

# Long enough for the import to wait its turn in the queue, short enough to forget it soon.
TOKEN_TTL_SECONDS = 600


@bp.operation(
    "POST /api/projects/<project_id>/imports",
    answer=contract.Import,
    status=202,
    fails="404 503",
    body=StartImport,
)
def start_import(project_id: str, body: StartImport) -> Any:
    """Import a Git repository as the project's next version; the clone runs in a worker."""
    app = state()
    with unit_of_work() as session:
        row = start.start(session, app.settings, current_user_id(), project_id, body.url, body.ref)
        answer = contract.Import.model_validate(row)
    try:
        if body.token:
            handoff.hand_over(app.redis, answer.id, body.token, TOKEN_TTL_SECONDS)
        enqueue_import(app.celery, answer.id)
    except Exception:
        # Redis or the broker is down: nothing is left behind, the client may simply retry.
        handoff.discard_quietly(app.redis, answer.id)
        with unit_of_work() as session:
            start.forget(session, answer.id)
        raise
    return answer, 202


@bp.operation("GET /api/imports/<import_id>", answer=contract.Import, fails="404")
def show_import(import_id: str) -> Any:
    """An import and how it ended: `fragmentId` once COMPLETE, `error` once FAILED."""
    with unit_of_work() as session:
        return start.get(session, current_user_id(), import_id)


@bp.operation(
    "GET /api/fragments/<fragment_id>/archive",
    answer=Raw("application/zip", "The version's files as a zip, streamed"),
    fails="404",
)
def archive(fragment_id: str) -> Any:
    """Download a version: its files as a zip."""
    with unit_of_work() as session:
        fragment, _message, _project = messages.owned_fragment(
            session, current_user_id(), fragment_id
        )
        files, when, version = dict(fragment.files or {}), fragment.created_at, fragment.version
    response = Response(stream_with_context(zip_stream(files, when)), mimetype="application/zip")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="version-{version}-{fragment_id[:8]}.zip"'
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.operation(
    "POST /api/fragments/<fragment_id>/push",
    answer=contract.Pushed,
    fails="404 409",
    body=PushFragment,
)
def push(fragment_id: str, body: PushFragment) -> Any:
    """Push a version to a branch of a Git remote as one commit."""
    app = state()
    done = push_version(
        app.db,
        app.settings,
        current_user_id(),
        fragment_id,
        PushRequest(body.url, body.branch, body.token, body.message, body.force),
    )
    return contract.Pushed(commit=done.commit, branch=done.branch, url=done.url)
