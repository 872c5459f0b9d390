"""Request bodies, validated strictly: unknown fields and wrong types are a 400."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.prompts import AttachmentInput

Framework = Literal["NEXTJS", "ANGULAR", "REACT", "VUE", "SVELTE"]
Id = Field(default=None, min_length=1, max_length=64)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _http_url(value: str) -> str:
    if not value.lower().startswith(("http://", "https://")) or len(value) > 2048:
        raise ValueError("must be an http(s) URL of at most 2048 characters")
    return value


class CreateProject(Body):
    name: str = Field(min_length=1, max_length=200)
    framework: Framework | None = None


class CreateConversation(Body):
    projectId: str = Field(min_length=1, max_length=64)
    title: str | None = Field(default=None, max_length=200)


class AttachmentBody(Body):
    type: Literal["IMAGE", "FIGMA_FILE", "GITHUB_REPO"] = "IMAGE"
    url: str
    size: int = Field(ge=0, le=10**12)
    width: int | None = Field(default=None, ge=0, le=100_000)
    height: int | None = Field(default=None, ge=0, le=100_000)
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
    imageUrl: str | None = None
    attachments: list[AttachmentBody] = Field(default_factory=list, max_length=20)

    _image = field_validator("imageUrl")(lambda v: v if v is None else _http_url(v))

    def prompt(self) -> str:
        text = (self.message if self.message is not None else self.value or "").strip()
        if not 3 <= len(text) <= 1000:
            raise ValueError("message must be 3 to 1000 characters")
        return text


class CancelMessage(Body):
    messageId: str = Field(min_length=1, max_length=64)
