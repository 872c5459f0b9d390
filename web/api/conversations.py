from __future__ import annotations

from typing import Any

from orchestrator import contract, projects
from web.api.common import unit_of_work
from web.auth import current_user_id
from web.endpoints import Api
from web.schemas import CreateConversation, ListConversations

bp = Api("conversations", __name__)


@bp.operation(
    "POST /api/conversations",
    answer=contract.Conversation,
    status=201,
    fails="404",
    body=CreateConversation,
)
def create(body: CreateConversation) -> Any:
    """Create a conversation."""
    with unit_of_work() as session:
        return projects.create_conversation(session, current_user_id(), body.project_id, body.title)


@bp.operation(
    "GET /api/conversations",
    answer=list[contract.Conversation],
    fails="404",
    query=ListConversations,
)
def index(query: ListConversations) -> Any:
    """List a project's conversations, newest activity first."""
    with unit_of_work() as session:
        return projects.list_conversations(session, current_user_id(), query.project_id)
