"""A project's versions (DESIGN section 12): list, diff, restore, live preview. Owner-only."""

from __future__ import annotations

from typing import Any

from flask import current_app

from orchestrator import contract
from orchestrator.versions import queries
from orchestrator.versions.preview import Reviving, live_preview
from orchestrator.versions.restore import restore
from web.api.common import unit_of_work
from web.auth import current_user_id
from web.endpoints import Api
from web.errors import RunInProgress
from web.schemas import RestoreFragment
from web.state import state

bp = Api("versions", __name__)


@bp.operation("GET /api/projects/<project_id>/versions", answer=list[contract.Version], fails="404")
def index(project_id: str) -> Any:
    """The project's versions, oldest first, without files."""
    with unit_of_work() as session:
        return queries.list_versions(session, current_user_id(), project_id)


@bp.operation("GET /api/fragments/<fragment_id>/diff", answer=contract.FragmentDiff, fails="404")
def diff(fragment_id: str) -> Any:
    """What this version changed against its parent, as unified diffs."""
    with unit_of_work() as session:
        return queries.diff(session, current_user_id(), fragment_id)


@bp.operation(
    "POST /api/fragments/<fragment_id>/restore",
    answer=contract.Restored,
    status=201,
    also={409: RunInProgress},
    fails="404",
    body=RestoreFragment,
    body_required=False,
)
def restore_version(fragment_id: str, body: RestoreFragment) -> Any:
    """Make this version the latest again: a new version with its files, on an assistant
    message in the conversation (default: the project's default one). No credit, no model."""
    with unit_of_work() as session:
        return restore(
            session,
            current_user_id(),
            fragment_id,
            conversation_id=body.conversation_id,
            public_url=state().settings.public_url,
        )


@bp.operation(
    "POST /api/fragments/<fragment_id>/sandbox", answer=contract.LivePreview, fails="404 503"
)
def sandbox(fragment_id: str) -> Any:
    """A live preview of this version (E2B: its sandbox if alive, else a new one)."""
    app = state()
    return live_preview(
        app.db,
        current_user_id(),
        fragment_id,
        public_url=app.settings.public_url,
        sandboxes=_reviving(),
    )


def _reviving() -> Reviving | None:
    """This process's E2B factory, built on first use; None with the local sandbox."""
    settings = state().settings
    if settings.sandbox != "e2b":
        return None
    found: Any = current_app.extensions.get("appforge.sandboxes")
    if found is None:
        from orchestrator.wiring.sandboxes import build_sandboxes

        found = current_app.extensions["appforge.sandboxes"] = build_sandboxes(settings)
    return found  # type: ignore[no-any-return]
