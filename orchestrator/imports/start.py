"""Starting an import: the URL and ref checked before anything is stored, then a PENDING row."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import AttachmentType, Import, ImportStatus
from orchestrator import projects
from orchestrator.errors import InvalidRequest, NotFound
from orchestrator.git import clone, remotes
from orchestrator.settings import Settings


def start(
    session: Session,
    settings: Settings,
    user_id: str,
    project_id: str,
    url: str,
    ref: str | None,
    *,
    message_id: str | None = None,
) -> Import:
    """A PENDING import of `url` into the caller's project; InvalidRequest for a refused URL."""
    project = projects.get_project(session, user_id, project_id)
    remotes.check(url, settings.import_allowed_hosts)
    clone.check_ref(ref)
    found = Import(
        project_id=project.id,
        user_id=user_id,
        type=AttachmentType.GITHUB_REPO,
        url=url,
        ref=ref,
        status=ImportStatus.PENDING,
        message_id=message_id,
    )
    session.add(found)
    session.flush()
    return found


def forget(session: Session, import_id: str) -> None:
    """An import that could not be sent to a worker: removed, as if never asked."""
    session.execute(delete(Import).where(Import.id == import_id))


def get(session: Session, user_id: str, import_id: str) -> Import:
    found = session.scalar(select(Import).where(Import.id == import_id, Import.user_id == user_id))
    if found is None:
        raise NotFound("Import not found")
    return found


def for_attachment(settings: Settings) -> Callable[[Session, str, str, str], str | None]:
    """send_prompt's `plan_import`: a PENDING import of a GITHUB_REPO attachment's URL, or None
    when its URL is one an import may not fetch (the model then sees the URL as text only)."""

    def plan(session: Session, user_id: str, project_id: str, url: str) -> str | None:
        try:
            return start(session, settings, user_id, project_id, url, None).id
        except InvalidRequest:
            return None

    return plan
