from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from orchestrator import accounts
from orchestrator.serialize import user_json
from web.api.common import unit_of_work
from web.auth import current_user_id, require_user
from web.state import state

bp = Blueprint("me", __name__)


@bp.get("/api/me")
@require_user
def me() -> ResponseReturnValue:
    with unit_of_work() as session:
        user = accounts.ensure_user(session, current_user_id(), state().settings.default_credits)
        return jsonify(user_json(user))
