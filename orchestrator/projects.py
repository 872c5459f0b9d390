"""Projects and their conversations, always scoped to their owner."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Conversation, Framework, Project
from orchestrator.errors import NotFound

DEFAULT_CONVERSATION_TITLE = "New Conversation"


def create_project(session: Session, user_id: str, name: str, framework: str | None) -> Project:
    project = Project(user_id=user_id, name=name, framework=framework or Framework.NEXTJS)
    session.add(project)
    session.flush()
    return project


def list_projects(session: Session, user_id: str) -> list[Project]:
    query = select(Project).where(Project.user_id == user_id)
    return list(session.scalars(query.order_by(Project.updated_at.desc(), Project.id)))


def get_project(session: Session, user_id: str, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None or project.user_id != user_id:
        raise NotFound("Project not found")
    return project


def create_conversation(
    session: Session, user_id: str, project_id: str, title: str | None
) -> Conversation:
    project = get_project(session, user_id, project_id)
    conversation = Conversation(
        project_id=project.id, user_id=user_id, title=title or DEFAULT_CONVERSATION_TITLE
    )
    session.add(conversation)
    session.flush()
    return conversation


def list_conversations(session: Session, user_id: str, project_id: str) -> list[Conversation]:
    get_project(session, user_id, project_id)
    query = select(Conversation).where(Conversation.project_id == project_id)
    return list(session.scalars(query.order_by(Conversation.updated_at.desc(), Conversation.id)))


def get_conversation(session: Session, user_id: str, conversation_id: str) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.user_id != user_id:
        raise NotFound("Conversation not found")
    return conversation


def default_conversation(session: Session, project: Project) -> Conversation:
    """The project's default conversation, created on first use; concurrent callers share one."""
    query = select(Conversation).where(
        Conversation.project_id == project.id, Conversation.is_default.is_(True)
    )
    found = session.scalar(query)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            conversation = Conversation(
                project_id=project.id,
                user_id=project.user_id,
                title=DEFAULT_CONVERSATION_TITLE,
                is_default=True,
            )
            session.add(conversation)
    except IntegrityError:
        found = session.scalar(query)
        assert found is not None
        return found
    return conversation
