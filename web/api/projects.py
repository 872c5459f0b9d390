from __future__ import annotations

from typing import Any

from orchestrator import accounts, contract, projects
from web.api.common import unit_of_work
from web.auth import current_user_id
from web.endpoints import Api
from web.schemas import CreateProject
from web.state import state

bp = Api("projects", __name__)


@bp.operation("POST /api/projects", answer=contract.Project, status=201, body=CreateProject)
def create(body: CreateProject) -> Any:
    """Create a project."""
    with unit_of_work() as session:
        accounts.ensure_user(session, current_user_id(), state().settings.default_credits)
        return projects.create_project(session, current_user_id(), body.name, body.framework)


@bp.operation("GET /api/projects", answer=list[contract.Project])
def index() -> Any:
    """List own projects."""
    with unit_of_work() as session:
        return projects.list_projects(session, current_user_id())


@bp.operation("GET /api/projects/<project_id>", answer=contract.Project, fails="404")
def show(project_id: str) -> Any:
    """Get a project."""
    with unit_of_work() as session:
        return projects.get_project(session, current_user_id(), project_id)
