"""The contract's JSON shapes (camelCase, ISO 8601 UTC with milliseconds and Z)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from models import Attachment, Conversation, Fragment, Message, Project, User


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def user_json(user: User) -> dict[str, Any]:
    return {"userId": user.id, "plan": user.plan, "credits": user.credits}


def project_json(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "userId": project.user_id,
        "name": project.name,
        "framework": project.framework,
        "createdAt": iso(project.created_at),
        "updatedAt": iso(project.updated_at),
    }


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "projectId": conversation.project_id,
        "title": conversation.title,
        "createdAt": iso(conversation.created_at),
        "updatedAt": iso(conversation.updated_at),
    }


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversationId": message.conversation_id,
        "projectId": message.project_id,
        "userId": message.user_id,
        "role": message.role,
        "content": message.content,
        "type": message.type,
        "status": message.status,
        "runId": message.run_id,
        "toolCalls": message.tool_calls or [],
        "imageUrl": message.image_url,
        "error": message.error,
        # Not in the seed documents: which provider and model served the run, attempts, usage.
        "metadata": message.run_metadata or {},
        "createdAt": iso(message.created_at),
        "updatedAt": iso(message.updated_at),
    }


def fragment_json(fragment: Fragment) -> dict[str, Any]:
    return {
        "id": fragment.id,
        "messageId": fragment.message_id,
        "sandboxId": fragment.sandbox_id,
        "sandboxUrl": fragment.sandbox_url,
        "title": fragment.title,
        "files": fragment.files or {},
        "metadata": fragment.fragment_metadata or {},
        "framework": fragment.framework,
        "imageUrl": fragment.image_url,
        "designSpec": fragment.design_spec,
        # DESIGN section 12: the fragment as a version of its project's app.
        "version": fragment.version,
        "parentId": fragment.parent_id,
        "changes": fragment.changes or {"added": [], "modified": [], "deleted": []},
        "createdAt": iso(fragment.created_at),
        "updatedAt": iso(fragment.updated_at),
    }


def version_json(fragment: Fragment) -> dict[str, Any]:
    """A version as the list shows it: everything but the files."""
    return {
        "id": fragment.id,
        "messageId": fragment.message_id,
        "version": fragment.version,
        "parentId": fragment.parent_id,
        "title": fragment.title,
        "changes": fragment.changes,
        "createdAt": iso(fragment.created_at),
    }


# All a public share shows of a fragment's metadata: an allow-list, so a key added later stays
# private until someone decides otherwise. Attempt logs, provider errors, usage and the sandbox's
# details are the owner's alone (DESIGN section 15).
PUBLIC_FRAGMENT_METADATA = ("summary", "title", "steps", "stopReason")


def public_fragment_json(fragment: Fragment) -> dict[str, Any]:
    """A fragment as anyone holding its id sees it: `fragment_json` without internal details."""
    body = fragment_json(fragment)
    metadata = body["metadata"]
    body["metadata"] = {k: metadata[k] for k in PUBLIC_FRAGMENT_METADATA if k in metadata}
    return body


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "messageId": attachment.message_id,
        "type": attachment.type,
        "url": attachment.url,
        "size": attachment.size,
        "width": attachment.width,
        "height": attachment.height,
        "importId": attachment.import_id,
        "sourceMetadata": attachment.source_metadata,
        "createdAt": iso(attachment.created_at),
        "updatedAt": iso(attachment.updated_at),
    }
