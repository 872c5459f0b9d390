"""A project's versions (DESIGN section 12): list, diff, restore, live preview. Owner-only."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from orchestrator.serialize import fragment_json, message_json, version_json
from orchestrator.versions import queries
from orchestrator.versions.preview import Reviving, live_preview
from orchestrator.versions.restore import restore
from web.api.common import parse, unit_of_work
from web.auth import current_user_id, require_user
from web.schemas import RestoreFragment
from web.state import state

bp = Blueprint("versions", __name__)


@bp.get("/api/projects/<project_id>/versions")
@require_user
def index(project_id: str) -> ResponseReturnValue:
    with unit_of_work() as session:
        found = queries.list_versions(session, current_user_id(), project_id)
        return jsonify([version_json(f) for f in found])


@bp.get("/api/fragments/<fragment_id>/diff")
@require_user
def diff(fragment_id: str) -> ResponseReturnValue:
    with unit_of_work() as session:
        return jsonify(queries.diff(session, current_user_id(), fragment_id))


@bp.post("/api/fragments/<fragment_id>/restore")
@require_user
def restore_version(fragment_id: str) -> ResponseReturnValue:
    body = parse(RestoreFragment, {} if not request.get_data() else None)
    with unit_of_work() as session:
        restored = restore(
            session,
            current_user_id(),
            fragment_id,
            conversation_id=body.conversationId,
            public_url=state().settings.public_url,
        )
        return jsonify(
            {
                "message": message_json(restored.message),
                "fragment": fragment_json(restored.fragment),
            }
        ), 201


@bp.post("/api/fragments/<fragment_id>/sandbox")
@require_user
def sandbox(fragment_id: str) -> ResponseReturnValue:
    app = state()
    preview = live_preview(
        app.db,
        current_user_id(),
        fragment_id,
        public_url=app.settings.public_url,
        sandboxes=_reviving(),
    )
    return jsonify(preview.as_json())


def _reviving() -> Reviving | None:
    """This process's E2B factory, built on first use; None with the local sandbox."""
    settings = state().settings
    if settings.sandbox != "e2b":
        return None
    found: Any = current_app.extensions.get("appforge.sandboxes")
    if found is None:
        from orchestrator.wiring.services import build_sandboxes

        found = current_app.extensions["appforge.sandboxes"] = build_sandboxes(settings)
    return found  # type: ignore[no-any-return]
