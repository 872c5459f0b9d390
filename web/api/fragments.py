from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from orchestrator import messages
from orchestrator.serialize import (
    fragment_json,
    message_json,
    project_json,
    public_fragment_json,
)
from web.api.common import unit_of_work
from web.auth import current_user_id, require_user

bp = Blueprint("fragments", __name__)


@bp.get("/api/fragments/<fragment_id>")
def public(fragment_id: str) -> ResponseReturnValue:
    """Fragments are shared publicly by their unguessable id."""
    with unit_of_work() as session:
        return jsonify(public_fragment_json(messages.public_fragment(session, fragment_id)))


@bp.get("/api/fragments/<fragment_id>/full")
@require_user
def full(fragment_id: str) -> ResponseReturnValue:
    with unit_of_work() as session:
        fragment, message, project = messages.owned_fragment(
            session, current_user_id(), fragment_id
        )
        return jsonify(
            {
                "fragment": fragment_json(fragment),
                "message": message_json(message),
                "project": project_json(project),
            }
        )
