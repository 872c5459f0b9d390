"""The wire contract: one pydantic model per JSON shape the API answers (DESIGN sections 3, 4, 12).

The views return these, the run engine puts a `Fragment` in its `fragment` event, and
/openapi.json is generated from them, so the three cannot drift. They live in the core, not in
`web/`, because the engine needs them too and `orchestrator/` never imports `web/`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    computed_field,
)
from pydantic.alias_generators import to_camel

from models import AttachmentType, Framework, MessageType, Plan, Role, Status

T = TypeVar("T")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and `Z` (DESIGN section 3); naive times are UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ISO_TIME = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
}
Time = Annotated[datetime, PlainSerializer(iso, return_type=str), WithJsonSchema(ISO_TIME)]
Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]


def or_empty(factory: Callable[[], T]) -> BeforeValidator:
    """A column that may hold NULL (or nothing) answers as an empty value of its type."""

    def fill(value: Any) -> Any:
        return value if value else factory()

    return BeforeValidator(fill)


class Shape(BaseModel):
    """A JSON shape of the API: read from a row's attributes (or built by name), written in
    camelCase in the order its fields are declared, every field present (null, not missing)."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(serialization_alias=to_camel),
        from_attributes=True,
        validate_by_name=True,
        extra="forbid",
        json_schema_serialization_defaults_required=True,
    )

    @classmethod
    def of(cls, base: Shape, **more: Any) -> Self:
        """This shape from `base`, a shape it extends, and the fields it adds."""
        return cls.model_validate({**base.__dict__, **more})

    def wire(self) -> dict[str, Any]:
        """The JSON value the API sends."""
        return self.model_dump(mode="json", by_alias=True)


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


class TokenUsage(Shape):
    """`metadata.usage` of a message and its fragment (DESIGN section 17): what a run cost."""

    prompt_tokens: int = Field(ge=0, description="Prompt tokens the providers reported, summed.")
    completion_tokens: int = Field(ge=0)
    cached_tokens: int = Field(ge=0, description="Prompt tokens served from a provider's cache.")
    requests: int = Field(ge=0, description="Requests the providers answered in full.")
    max_request_tokens: int = Field(ge=0, description="The largest request's prompt tokens.")


# A run's metadata: open-ended, with `usage` in the shape above.
RunMetadata = Annotated[
    dict[str, Any],
    or_empty(dict),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {"usage": TokenUsage.model_json_schema(mode="serialization")},
            "additionalProperties": True,
        }
    ),
]


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
    metadata: RunMetadata = Field(
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


# All a public share shows of a fragment's metadata: an allow-list, so a key added later stays
# private until someone decides otherwise. Attempt logs, provider errors, usage and the sandbox's
# details are the owner's alone (DESIGN section 15).
PUBLIC_METADATA = ("summary", "title", "steps", "stopReason")

CheckStatus = Literal["passed", "failed", "skipped"]


class BuildCheck(Shape):
    """The framework's build of the version's sources (DESIGN section 16); skipped for static."""

    status: CheckStatus
    exit_code: int | None
    duration_ms: int = Field(ge=0)
    errors: list[str]


class RenderCheck(Shape):
    """The preview opened in a headless Chromium: what went wrong, and what it was not let fetch."""

    status: CheckStatus
    page_errors: list[str]
    console_errors: list[str]
    failed_requests: list[str]
    blocked: list[str]
    blank: bool
    duration_ms: int = Field(ge=0)


class Checks(Shape):
    """A version's `metadata.checks`: the last round's build and render, and how many rounds ran."""

    status: CheckStatus
    rounds: int = Field(ge=0)
    build: BuildCheck
    render: RenderCheck


class Changes(Shape):
    """What a version changed against its parent: sorted paths."""

    added: list[str]
    modified: list[str]
    deleted: list[str]


NO_CHANGES: dict[str, list[str]] = {"added": [], "modified": [], "deleted": []}


class Fragment(Shape):
    id: Uuid
    message_id: Uuid
    sandbox_id: str | None
    sandbox_url: str | None
    title: str
    files: Annotated[dict[str, str], or_empty(dict)]
    metadata: RunMetadata = Field(validation_alias="fragment_metadata")
    framework: Framework
    image_url: str | None
    design_spec: AnyJson
    version: int = Field(ge=1)
    parent_id: Uuid | None
    changes: Annotated[Changes, or_empty(lambda: NO_CHANGES)]
    created_at: Time
    updated_at: Time


def fragment_json(row: Any) -> dict[str, Any]:
    """A fragment row as the API and the run's `fragment` event carry it."""
    return Fragment.model_validate(row).wire()


class FragmentPaths(Fragment):
    """A fragment listed with `fragmentFiles=paths`: its sorted file paths instead of the files,
    which `GET /api/messages/<id>/fragment` serves, so a page does not grow with the code."""

    files: Annotated[dict[str, str], or_empty(dict)] = Field(exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def file_paths(self) -> list[str]:
        return sorted(self.files)


def _public(metadata: Any) -> dict[str, Any]:
    found = metadata or {}
    public = {key: found[key] for key in PUBLIC_METADATA if key in found}
    checks = found.get("checks")
    if isinstance(checks, dict) and "status" in checks:
        public["checks"] = {"status": checks["status"]}  # what failed stays the owner's
    return public


PublicMetadata = Annotated[
    dict[str, Any],
    BeforeValidator(_public),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                **{key: {} for key in PUBLIC_METADATA},
                "checks": {
                    "type": "object",
                    "properties": {"status": {"enum": ["passed", "failed", "skipped"]}},
                    "required": ["status"],
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        }
    ),
]


class PublicFragment(Fragment):
    """A fragment as anyone holding its id sees it: no internal details in `metadata`."""

    metadata: PublicMetadata = Field(validation_alias="fragment_metadata")


class Version(Shape):
    """A version as the project's list shows it: everything but the files."""

    id: Uuid
    message_id: Uuid
    version: int = Field(ge=1)
    parent_id: Uuid | None
    title: str
    changes: Annotated[Changes, or_empty(lambda: NO_CHANGES)]
    created_at: Time


class FileDiff(Shape):
    path: str
    change: Literal["added", "modified", "deleted"]
    diff: str = Field(description="A unified diff against the parent")


class FragmentDiff(Shape):
    fragment_id: Uuid
    parent_id: Uuid | None
    files: list[FileDiff]


class LivePreview(Shape):
    """Where a version's live preview answers; `expiresAt` is null when it does not expire."""

    sandbox_url: str
    sandbox_id: str | None
    expires_at: Time | None


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
