"""Publishing a project's app at a stable public URL (DESIGN section 18).

The slug is given once per project and kept; which version it serves is one column, so
publishing another version (or unpublishing) switches at once.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Project, utcnow
from orchestrator import messages, projects
from orchestrator.errors import InvalidRequest, NotFound
from orchestrator.versions import numbering


def publish(
    session: Session, user_id: str, project_id: str, fragment_id: str | None, public_url: str
) -> Project:
    """Serve `fragment_id` (default: the latest version) at the project's URL."""
    project = projects.get_project(session, user_id, project_id)
    if fragment_id is None:
        latest = numbering.latest(session, project.id)
        if latest is None:
            raise InvalidRequest("The project has no version to publish yet")
        fragment = latest
    else:
        fragment, _message, owner = messages.owned_fragment(session, user_id, fragment_id)
        if owner.id != project.id:
            raise InvalidRequest("fragmentId is not a version of this project")
    if project.publish_slug is None:
        project.publish_slug = secrets.token_hex(8)
    project.published_fragment_id = fragment.id
    project.published_url = f"{public_url}/apps/{project.publish_slug}/"
    project.published_at = utcnow()
    session.flush()
    return project


def unpublish(session: Session, user_id: str, project_id: str) -> Project:
    """The URL answers 404 from now on; the slug is kept for a later publish."""
    project = projects.get_project(session, user_id, project_id)
    project.published_fragment_id = None
    project.published_at = None
    session.flush()
    return project


def published_fragment(session: Session, slug: str) -> str:
    """The id of the version `slug` serves; NotFound when none is published there."""
    found = session.scalar(
        select(Project.published_fragment_id).where(Project.publish_slug == slug)
    )
    if found is None:
        raise NotFound("Not found")
    return found
