from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from orchestrator import projects
from orchestrator.errors import InvalidRequest
from orchestrator.serialize import conversation_json
from web.api.common import parse, unit_of_work
from web.auth import current_user_id, require_user
from web.schemas import CreateConversation

bp = Blueprint("conversations", __name__)


@bp.post("/api/conversations")
@require_user
def create() -> ResponseReturnValue:
    body = parse(CreateConversation)
    with unit_of_work() as session:
        conversation = projects.create_conversation(
            session, current_user_id(), body.projectId, body.title
        )
        return jsonify(conversation_json(conversation)), 201


@bp.get("/api/conversations")
@require_user
def index() -> ResponseReturnValue:
    project_id = request.args.get("projectId")
    if not project_id:
        raise InvalidRequest("projectId is required")
    with unit_of_work() as session:
        found = projects.list_conversations(session, current_user_id(), project_id)
        return jsonify([conversation_json(c) for c in found])
