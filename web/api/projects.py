from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from orchestrator import accounts, projects
from orchestrator.serialize import project_json
from web.api.common import parse, unit_of_work
from web.auth import current_user_id, require_user
from web.schemas import CreateProject
from web.state import state

bp = Blueprint("projects", __name__)


@bp.post("/api/projects")
@require_user
def create() -> ResponseReturnValue:
    body = parse(CreateProject)
    with unit_of_work() as session:
        accounts.ensure_user(session, current_user_id(), state().settings.default_credits)
        project = projects.create_project(session, current_user_id(), body.name, body.framework)
        return jsonify(project_json(project)), 201


@bp.get("/api/projects")
@require_user
def index() -> ResponseReturnValue:
    with unit_of_work() as session:
        return jsonify(
            [project_json(p) for p in projects.list_projects(session, current_user_id())]
        )


@bp.get("/api/projects/<project_id>")
@require_user
def show(project_id: str) -> ResponseReturnValue:
    with unit_of_work() as session:
        return jsonify(project_json(projects.get_project(session, current_user_id(), project_id)))
