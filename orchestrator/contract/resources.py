"""Users, projects, conversations, messages and attachments as the API answers them (DESIGN 3-4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from models import AttachmentType, Framework, MessageType, Plan, Role, Status
from orchestrator.contract.fragments import Fragment, FragmentPaths
from orchestrator.contract.shape import Shape, Time, Uuid, or_empty

TOOL_CALL = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "args": {"description": "The parsed arguments the model sent."},
        "result": {"description": "A JSON object; null while the tool runs."},
    },
    "required": ["id", "name"],
}
ToolCall = Annotated[dict[str, Any], WithJsonSchema(TOOL_CALL)]
AnyJson = Annotated[Any, Field(description="Any JSON value, or null.")]


class Me(Shape):
    """`GET /api/me`: who the caller is."""

    user_id: str = Field(validation_alias="id")
    plan: Plan
    credits: int


class Project(Shape):
    id: Uuid
    user_id: str
    name: str
    framework: Framework
    created_at: Time
    updated_at: Time


class Conversation(Shape):
    id: Uuid
    project_id: Uuid
    title: str
    created_at: Time
    updated_at: Time


class Message(Shape):
    id: Uuid
    conversation_id: Uuid
    project_id: Uuid
    user_id: str
    role: Role
    content: str
    type: MessageType
    status: Status
    run_id: Uuid | None
    tool_calls: Annotated[list[ToolCall], or_empty(list)]
    image_url: str | None
    error: str | None
    # Not in the seed documents: which provider and model served the run, attempts, usage.
    metadata: Annotated[dict[str, Any], or_empty(dict)] = Field(
        validation_alias="run_metadata",
        description="Which provider and model served the run, attempts, token usage.",
    )
    created_at: Time
    updated_at: Time


class Attachment(Shape):
    id: Uuid
    message_id: Uuid
    type: AttachmentType
    url: str
    size: int = Field(ge=0)
    width: int | None
    height: int | None
    import_id: str | None
    source_metadata: AnyJson
    created_at: Time
    updated_at: Time


class ListedMessage(Message):
    """A message as `GET /api/messages` lists it: with its fragment (its `files`, or with
    `fragmentFiles=paths` their sorted `filePaths`) and its attachments."""

    code_fragment: Fragment | FragmentPaths | None
    attachments: list[Attachment]


class SentMessage(Message):
    """`POST /api/messages`: the stored user turn, with the run and the new assistant message."""

    role: Literal[Role.USER]
    run_id: Uuid
    success: Literal[True] = True
    message_id: Uuid


class FragmentWithOwner(Shape):
    """`GET /api/fragments/<id>/full`: the fragment with its message and project."""

    fragment: Fragment
    message: Message
    project: Project


class Restored(Shape):
    """`POST /api/fragments/<id>/restore`: the new message and its fragment (a new version)."""

    message: Message
    fragment: Fragment
