"""What requests may carry, each rule stated once: the views get these models parsed, and
/openapi.json describes them. Bodies are strict: unknown fields and wrong types are a 400."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from orchestrator import messages
from orchestrator.errors import InvalidRequest
from orchestrator.send_prompt import AttachmentInput
from orchestrator.streams.replay import CURSOR_PATTERN
from web.api.common import storable

Id = Field(default=None, min_length=1, max_length=64)
Framework = Literal["NEXTJS", "ANGULAR", "REACT", "VUE", "SVELTE"]


class Body(BaseModel):
    """A JSON body: camelCase on the wire, nothing unknown, no coercion."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel), extra="forbid", strict=True
    )


class Query(BaseModel):
    """A query string: camelCase names; parameters it does not name are left alone."""

    model_config = ConfigDict(alias_generator=AliasGenerator(validation_alias=to_camel))


# An absolute http(s) URL with a host, without spaces or control characters. Written so that
# Python and ECMA (the OpenAPI document's regex dialect) read it alike.
HTTP_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f/?#]+([/?#][^\x00-\x20\x7f]*)?$"
URL_MAX = 2048
URL_SCHEMA: dict[str, Any] = {"type": "string", "pattern": HTTP_URL, "maxLength": URL_MAX}
# The database column is a 32-bit integer on PostgreSQL.
INT32_MAX = 2**31 - 1


def _integral(value: Any) -> Any:
    """JSON has one number type: 380.0 is the integer 380 (as JSON Schema says); 380.5 is not."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= INT32_MAX:
        return int(value)
    return value


Size = Annotated[int, Field(ge=0, le=INT32_MAX), BeforeValidator(_integral)]
Pixels = Annotated[int, Field(ge=0, le=100_000), BeforeValidator(_integral)]


def _http_url(value: str) -> str:
    if len(value) > URL_MAX or not re.fullmatch(HTTP_URL, value):
        raise ValueError(f"must be an http(s) URL of at most {URL_MAX} characters")
    return value


class CreateProject(Body):
    name: str = Field(min_length=1, max_length=200)
    framework: Framework | None = None


class CreateConversation(Body):
    project_id: str = Field(min_length=1, max_length=64)
    title: str | None = Field(default=None, max_length=200)


class AttachmentBody(Body):
    type: Literal["IMAGE", "FIGMA_FILE", "GITHUB_REPO"] = "IMAGE"
    url: str = Field(json_schema_extra=URL_SCHEMA)
    size: Size
    width: Pixels | None = None
    height: Pixels | None = None
    import_id: str | None = Field(default=None, max_length=255)
    source_metadata: Any = None

    _url = field_validator("url")(_http_url)

    def to_input(self) -> AttachmentInput:
        return AttachmentInput(
            url=self.url,
            size=self.size,
            type=self.type,
            width=self.width,
            height=self.height,
            import_id=self.import_id,
            source_metadata=self.source_metadata,
        )


# The prompt: 3 to 1000 characters once trimmed (DESIGN section 4).
PROMPT_MIN, PROMPT_MAX = 3, 1000
# The same rule for the document: what Python's str.strip() removes, spelled out (ECMA's \s is a
# slightly different set), then the first and last non-space and what lies between.
SPACE = r"[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
INK = SPACE.replace("[", "[^", 1)
PROMPT: JsonDict = {
    "type": "string",
    "pattern": f"^{SPACE}*{INK}[\\s\\S]{{{PROMPT_MIN - 2},{PROMPT_MAX - 2}}}{INK}{SPACE}*$",
}


def _present(name: str, schema: JsonDict, **others: JsonDict) -> JsonDict:
    return {"required": [name], "properties": {name: schema, **others}}


NULL: JsonDict = {"type": "null"}
TEXT: JsonDict = {"type": "string"}
# What the model checks across fields, said to the document (as OpenAPI can say it).
SEND_RULES: JsonDict = {
    "allOf": [
        {"anyOf": [_present("message", PROMPT), _present("value", PROMPT, message=NULL)]},
        {"anyOf": [_present("projectId", TEXT), _present("conversationId", TEXT)]},
    ]
}


class SendMessage(Body):
    """`message` (or its alias `value`, used when `message` is absent or null) is 3 to 1000
    characters after trimming. `projectId` or `conversationId` is required; with only
    `projectId` the project's default conversation is used, and when both are given they must
    agree (else 400)."""

    model_config = ConfigDict(json_schema_extra=SEND_RULES)

    message: str | None = None
    value: str | None = None  # the Zapdev form's name for the same field
    project_id: str | None = Id
    conversation_id: str | None = Id
    image_url: str | None = Field(
        default=None, json_schema_extra={"anyOf": [URL_SCHEMA, {"type": "null"}]}
    )
    attachments: list[AttachmentBody] = Field(default_factory=list, max_length=20)

    _image = field_validator("image_url")(lambda v: v if v is None else _http_url(v))

    @property
    def text(self) -> str:
        """The prompt as it is stored: `message` (else `value`), trimmed."""
        return (self.message if self.message is not None else self.value or "").strip()

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if not PROMPT_MIN <= len(self.text) <= PROMPT_MAX:
            raise ValueError(f"message must be {PROMPT_MIN} to {PROMPT_MAX} characters")
        if not self.project_id and not self.conversation_id:
            raise ValueError("projectId or conversationId is required")
        return self


# A Git remote's URL: the shape only; where it may go is checked by orchestrator/git/remotes.py,
# whose refusals say why in a sentence.
GIT_URL = Field(min_length=1, max_length=URL_MAX)
# A private repository's token: used for one command, never stored (DESIGN section 18).
GIT_TOKEN = Field(default=None, min_length=1, max_length=1000)
GIT_REF = Field(default=None, min_length=1, max_length=200)


class StartImport(Body):
    type: Literal["GITHUB_REPO"] = "GITHUB_REPO"
    url: str = GIT_URL
    ref: str | None = GIT_REF
    token: str | None = GIT_TOKEN


class PushFragment(Body):
    url: str = GIT_URL
    branch: str = Field(min_length=1, max_length=200)
    token: str | None = GIT_TOKEN
    message: str | None = Field(default=None, min_length=1, max_length=5000)
    force: bool = False


class Publish(Body):
    fragment_id: str | None = Id


class CancelMessage(Body):
    message_id: str = Field(min_length=1, max_length=64)


class RestoreFragment(Body):
    conversation_id: str | None = Id


def _cursor(value: str) -> str | None:
    if not value:
        return None  # `before=` says nothing
    if len(value) > 255 or not storable(value):
        raise ValueError("before and after are message ids")
    return value


def _whole_number(value: str) -> Any:
    if not value.isascii() or not value.isdigit():  # "²" is a digit to str.isdigit()
        raise ValueError(f"limit must be a whole number from 1 to {messages.MAX_PAGE}")
    return int(value)


Cursor = Annotated[str | None, BeforeValidator(_cursor)]


# An empty scope parameter is an absent one, as it always was.
Scope = Annotated[str | None, BeforeValidator(lambda value: value or None)]


class ListMessages(Query):
    project_id: Scope = Field(
        default=None, description="One of projectId and conversationId is required"
    )
    conversation_id: Scope = Field(
        default=None, description="One of projectId and conversationId is required"
    )
    limit: Annotated[int, BeforeValidator(_whole_number)] = Field(
        default=messages.DEFAULT_PAGE,
        ge=1,
        le=messages.MAX_PAGE,
        description=f"Messages per page: {messages.DEFAULT_PAGE} by default, "
        f"at most {messages.MAX_PAGE}",
    )
    before: Cursor = Field(
        default=None, description="A message id: the page of messages just before it"
    )
    after: Cursor = Field(
        default=None, description="A message id: the page of messages just after it"
    )
    fragment_files: Literal["files", "paths"] = Field(
        default="files",
        description="How a listed `codeFragment` carries its files: `files` (the default, "
        "`{path: content}`) or `paths` (`filePaths`, sorted, without the contents)",
    )

    @model_validator(mode="after")
    def _one_cursor(self) -> Self:
        if self.before and self.after:
            raise ValueError("give before or after, not both")
        return self

    def page(self) -> messages.Page:
        return messages.Page(limit=self.limit, before=self.before, after=self.after)


class ListConversations(Query):
    project_id: str = Field(min_length=1, description="The project")


class StreamQuery(Query):
    last_event_id: str | None = Field(
        default=None,
        description="Resume after this stream id (for EventSource)",
        json_schema_extra={"pattern": CURSOR_PATTERN},
    )


class ChatMessage(BaseModel):
    """One UIMessage of the AI SDK; only the parts of the last user message are read."""

    model_config = ConfigDict(extra="ignore")

    id: str = ""
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]] = Field(max_length=100)


class ChatRequest(Body):
    """The body `DefaultChatTransport` sends: `id` names a conversation, or a project (its
    default conversation); the last message is the user's prompt."""

    id: str = Field(min_length=1, max_length=64)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: str | None = None

    def send_message(self, scope: dict[str, str]) -> SendMessage:
        """The prompt as `POST /api/messages` takes it, checked by the same rules (400s)."""
        if self.trigger != "submit-message":
            raise InvalidRequest("Only trigger submit-message is supported: send the prompt again")
        last = self.messages[-1]
        if last.role != "user":
            raise InvalidRequest("The last message must be the user's prompt")
        texts: list[str] = []
        attachments: list[dict[str, Any]] = []
        for part in last.parts:
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "file":
                attachments.append(_file_attachment(part))
        body = {"message": "\n".join(texts), **scope, "attachments": attachments}
        return SendMessage.model_validate(body)


def _file_attachment(part: dict[str, Any]) -> dict[str, Any]:
    """A `file` part as an attachment: an http(s) URL of an image (data: URLs are not stored)."""
    url, media = part.get("url"), part.get("mediaType")
    if not isinstance(url, str) or not re.fullmatch(HTTP_URL, url):
        raise InvalidRequest("A file part's url must be an http(s) URL: upload the file first")
    if not isinstance(media, str) or not media.startswith("image/"):
        raise InvalidRequest("Only image files can be attached")
    return {"type": "IMAGE", "url": url, "size": 0}
