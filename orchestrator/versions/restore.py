"""Restoring a version: a new version with its files, on an assistant message. Free and instant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import RUNNING, Conversation, Fragment, Message, MessageType, Role, Status, utcnow
from orchestrator import messages, projects
from orchestrator.errors import Conflict, InvalidRequest
from orchestrator.versions import record
from orchestrator.versions.record import LATEST


@dataclass(frozen=True)
class Restored:
    message: Message
    fragment: Fragment


def restore(
    session: Session,
    user_id: str,
    fragment_id: str,
    *,
    conversation_id: str | None,
    public_url: str,
) -> Restored:
    """Make version `fragment_id` the latest again. No credit, no model call, no sandbox."""
    source, _message, project = messages.owned_fragment(session, user_id, fragment_id)
    if conversation_id:
        conversation = projects.get_conversation(session, user_id, conversation_id)
        if conversation.project_id != project.id:
            raise InvalidRequest("conversationId does not belong to the fragment's project")
    else:
        conversation = projects.default_conversation(session, project)
    running = session.scalar(
        select(Message.id).where(
            Message.conversation_id == conversation.id, Message.status.in_(RUNNING)
        )
    )
    if running is not None:
        raise Conflict("A message is already being processed", messageId=running)
    now = utcnow()
    message = Message(
        conversation_id=conversation.id,
        project_id=project.id,
        user_id=user_id,
        role=Role.ASSISTANT,
        seq=1,
        content=f'Restored version {source.version} ("{source.title}").',
        type=MessageType.RESULT,
        status=Status.COMPLETE,
        tool_calls=[],
        run_metadata={"restoredFrom": source.id},
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    session.flush()
    fragment = record.upsert_fragment(
        session,
        message.id,
        record.FragmentValues(
            title=source.title,
            files=dict(source.files or {}),
            framework=source.framework,
            sandbox_id=None,
            sandbox_url=f"{public_url}/preview/{{fragment_id}}/",
            metadata={
                "restoredFrom": source.id,
                "restoredVersion": source.version,
                # What its preview was built by, with the build output below.
                **_kept_build(source.fragment_metadata),
            },
            image_url=source.image_url,
            parent_id=LATEST,
            # A built app's preview is its build output: the restored version serves the same.
            build_files=dict(source.build_files) if source.build_files is not None else None,
            # The same app: the same picture, and the same checks' verdict.
            screenshot=source.screenshot,
        ),
    )
    fragment.design_spec = source.design_spec
    # Restoring is activity: the conversation moves to the top of its list.
    session.execute(
        update(Conversation).where(Conversation.id == conversation.id).values(updated_at=now)
    )
    return Restored(message, fragment)


def _kept_build(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The restored version's `metadata.build` and `metadata.checks`, if it had them."""
    found = metadata or {}
    return {key: found[key] for key in ("build", "checks") if isinstance(found.get(key), dict)}
