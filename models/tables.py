"""The product's tables as plain SQLAlchemy 2.0 models (no Flask, no app context)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Plan(StrEnum):
    FREE = "FREE"
    PRO = "PRO"


class Framework(StrEnum):
    NEXTJS = "NEXTJS"
    ANGULAR = "ANGULAR"
    REACT = "REACT"
    VUE = "VUE"
    SVELTE = "SVELTE"


class Role(StrEnum):
    USER = "USER"
    ASSISTANT = "ASSISTANT"


class MessageType(StrEnum):
    RESULT = "RESULT"
    ERROR = "ERROR"
    STREAMING = "STREAMING"


class Status(StrEnum):
    PENDING = "PENDING"
    STREAMING = "STREAMING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


RUNNING = (Status.PENDING, Status.STREAMING)
TERMINAL = (Status.COMPLETE, Status.FAILED, Status.CANCELLED)


class AttachmentType(StrEnum):
    IMAGE = "IMAGE"
    FIGMA_FILE = "FIGMA_FILE"
    GITHUB_REPO = "GITHUB_REPO"


class Tz(TypeDecorator[datetime]):
    """Timezone-aware timestamps; SQLite returns naive values, so UTC is re-attached on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(Tz(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Tz(), default=utcnow, onupdate=utcnow)


class User(Timestamps, Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    plan: Mapped[str] = mapped_column(String(16), default=Plan.FREE)
    credits: Mapped[int] = mapped_column(Integer, default=0)


class CreditLedger(Base):
    """Every change of a balance, so the balance can always be explained."""

    __tablename__ = "credit_ledger"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(Tz(), default=utcnow)


class Project(Timestamps, Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    framework: Mapped[str] = mapped_column(String(16), default=Framework.NEXTJS)


class Conversation(Timestamps, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        # A project has exactly one default conversation, whoever races to create it.
        Index(
            "uq_conversations_default",
            "project_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
        Index("ix_conversations_project_activity", "project_id", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    title: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class Message(Timestamps, Base):
    __tablename__ = "messages"
    __table_args__ = (
        # The database, not a check-then-insert, keeps one run going per conversation.
        Index(
            "uq_messages_one_running",
            "conversation_id",
            unique=True,
            sqlite_where=text("status IN ('PENDING', 'STREAMING')"),
            postgresql_where=text("status IN ('PENDING', 'STREAMING')"),
        ),
        Index("ix_messages_conversation_order", "conversation_id", "created_at", "seq"),
        Index("ix_messages_project_order", "project_id", "created_at", "seq"),
        Index("ix_messages_running", "status", "heartbeat_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    # Orders a turn's user message before its assistant message when their timestamps tie.
    seq: Mapped[int] = mapped_column(Integer, default=0)
    content: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(16), default=MessageType.RESULT)
    status: Mapped[str] = mapped_column(String(16), default=Status.COMPLETE)
    run_id: Mapped[str | None] = mapped_column(String(36))
    # Fences writers: a worker's claim token; a writer whose token is stale changes nothing.
    lease: Mapped[str | None] = mapped_column(String(36))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Tz())
    tool_calls: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    image_url: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    run_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credit_refunded: Mapped[bool] = mapped_column(Boolean, default=False)


class Fragment(Timestamps, Base):
    """One version of its project's app (DESIGN section 12): the whole app after a run."""

    __tablename__ = "fragments"
    __table_args__ = (
        # Versions are numbered by the database: two runs finishing together cannot share one.
        UniqueConstraint("project_id", "version", name="uq_fragments_project_version"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    message_id: Mapped[str] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE", name="fk_fragments_project")
    )
    version: Mapped[int] = mapped_column(Integer)
    # The base's id. No foreign key: SQLite's table rebuilds (batch migrations) would fire its
    # ON DELETE and wipe every parent; versions are only ever deleted with their project.
    parent_id: Mapped[str | None] = mapped_column(String(36))
    # {added, modified, deleted}: sorted paths, against the parent.
    changes: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    sandbox_id: Mapped[str | None] = mapped_column(String(255))
    sandbox_url: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str] = mapped_column(String(200))
    files: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    fragment_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    framework: Mapped[str] = mapped_column(String(16), default=Framework.NEXTJS)
    image_url: Mapped[str | None] = mapped_column(Text)
    design_spec: Mapped[Any | None] = mapped_column(JSON)
    # The build output of the app (path -> text), served as its preview instead of `files`;
    # NULL for a static app. Deferred: listing fragments never loads it.
    build_files: Mapped[dict[str, str] | None] = mapped_column(
        JSON(none_as_null=True), deferred=True
    )
    # The render check's PNG of the version (DESIGN section 16), in the database so any web
    # process serves it; NULL when none was taken. Deferred: only its endpoint reads it.
    screenshot: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class Attachment(Timestamps, Base):
    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    message_id: Mapped[str] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(16), default=AttachmentType.IMAGE)
    url: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer, default=0)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    import_id: Mapped[str | None] = mapped_column(String(255))
    source_metadata: Mapped[Any | None] = mapped_column(JSON)


class IdempotencyKey(Base):
    """The first answer to a keyed POST, replayed to retries for a day."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    message_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(Tz(), default=utcnow)
