"""Request bodies, validated strictly: unknown fields and wrong types are a 400."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from orchestrator.send_prompt import AttachmentInput

Framework = Literal["NEXTJS", "ANGULAR", "REACT", "VUE", "SVELTE"]
Id = Field(default=None, min_length=1, max_length=64)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


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
    projectId: str = Field(min_length=1, max_length=64)
    title: str | None = Field(default=None, max_length=200)


class AttachmentBody(Body):
    type: Literal["IMAGE", "FIGMA_FILE", "GITHUB_REPO"] = "IMAGE"
    url: str = Field(json_schema_extra=URL_SCHEMA)
    size: Size
    width: Pixels | None = None
    height: Pixels | None = None
    importId: str | None = Field(default=None, max_length=255)
    sourceMetadata: Any = None

    _url = field_validator("url")(_http_url)

    def to_input(self) -> AttachmentInput:
        return AttachmentInput(
            url=self.url,
            size=self.size,
            type=self.type,
            width=self.width,
            height=self.height,
            import_id=self.importId,
            source_metadata=self.sourceMetadata,
        )


class SendMessage(Body):
    message: str | None = None
    value: str | None = None  # the Zapdev form's name for the same field
    projectId: str | None = Id
    conversationId: str | None = Id
    imageUrl: str | None = Field(
        default=None, json_schema_extra={"anyOf": [URL_SCHEMA, {"type": "null"}]}
    )
    attachments: list[AttachmentBody] = Field(default_factory=list, max_length=20)

    _image = field_validator("imageUrl")(lambda v: v if v is None else _http_url(v))

    def prompt(self) -> str:
        text = (self.message if self.message is not None else self.value or "").strip()
        if not 3 <= len(text) <= 1000:
            raise ValueError("message must be 3 to 1000 characters")
        return text


class CancelMessage(Body):
    messageId: str = Field(min_length=1, max_length=64)


class RestoreFragment(Body):
    conversationId: str | None = Id
