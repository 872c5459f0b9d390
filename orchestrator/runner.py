"""Executing one run of an assistant message: claim it, run the agent, write the outcome.

Safe to call twice for the same run (a duplicate delivery finds the message already claimed), and
every write is fenced by the lease, so a run cancelled or handed to another worker changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models import Attachment, Fragment, Message, Project, Status, transaction
from orchestrator import lifecycle, prompting
from orchestrator.agent import Outcome, run_agent
from orchestrator.cancellation import RunWatch
from orchestrator.errors import ProviderError, SandboxError
from orchestrator.events import (
    DeltaEvent,
    ErrorEvent,
    Event,
    EventLog,
    FragmentEvent,
    StatusEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from orchestrator.lifecycle import FragmentValues, Lease
from orchestrator.providers.base import Cancelled
from orchestrator.providers.chain import ChainRun
from orchestrator.sandboxes.base import SandboxFactory
from orchestrator.sandboxes.lazy import LazySandbox
from orchestrator.serialize import fragment_json
from orchestrator.settings import Settings
from orchestrator.versions.base import Base, load_base, with_file_tree
from orchestrator.versions.result import first_changes, run_files

log = logging.getLogger(__name__)

T = TypeVar("T")

FAILED_TEXT = {
    "provider": "Sorry, the AI service is unavailable right now, so this request could not be "
    "completed. Your credit was refunded; please try again in a moment.",
    "deadline": "Sorry, this request took too long and was stopped. Your credit was refunded.",
    "internal": "Sorry, something went wrong while generating a reply. Your credit was refunded; "
    "please try again.",
}


@dataclass(frozen=True)
class RunServices:
    """Everything a run needs, built once per worker process at the Celery edge."""

    settings: Settings
    db: sessionmaker[Session]
    redis: redis.Redis
    events: EventLog
    new_chain: Callable[[], ChainRun]
    sandboxes: SandboxFactory


@dataclass(frozen=True)
class RunContext:
    framework: str
    messages: list[dict[str, Any]]
    prompt_text: str
    image_url: str | None
    attempt: int = 1
    # What an earlier attempt of this run already wrote (a re-run after a worker died).
    earlier_content: str = ""
    earlier_tool_calls: tuple[dict[str, Any], ...] = ()
    # The project's latest version when the run was claimed: what the workspace starts with.
    base: Base | None = None


def execute_run(services: RunServices, message_id: str, run_id: str) -> str | None:
    """Run the agent for one assistant message. Returns its final status, or None if not ours."""
    with transaction(services.db) as session:
        lease = lifecycle.claim(session, message_id, run_id)
    if lease is None:
        log.info("run %s of %s is not pending any more; nothing to do", run_id, message_id)
        return None
    with transaction(services.db) as session:
        context = load_context(session, message_id)
    return _Run(services, lease, context).execute()


def load_context(session: Session, message_id: str) -> RunContext:
    assistant = session.get(Message, message_id)
    assert assistant is not None
    project = session.get(Project, assistant.project_id)
    assert project is not None
    earlier = list(
        session.scalars(
            select(Message)
            .where(
                Message.conversation_id == assistant.conversation_id,
                Message.created_at <= assistant.created_at,
                Message.id != assistant.id,
            )
            .order_by(Message.created_at, Message.seq, Message.id)
        )
    )
    prompt = earlier.pop()  # the user turn stored with this assistant message
    attachments = list(
        session.scalars(select(Attachment).where(Attachment.message_id == prompt.id))
    )
    base = load_base(session, project.id)
    messages = prompting.build_messages(project.framework, earlier, prompt, attachments)
    return RunContext(
        framework=project.framework,
        messages=with_file_tree(messages, base),
        base=base,
        prompt_text=prompt.content,
        image_url=prompt.image_url,
        attempt=assistant.attempts,
        earlier_content=assistant.content if assistant.attempts > 1 else "",
        earlier_tool_calls=tuple(assistant.tool_calls or ()) if assistant.attempts > 1 else (),
    )


class _Run:
    def __init__(self, services: RunServices, lease: Lease, context: RunContext) -> None:
        self.services = services
        self.settings = services.settings
        self.lease = lease
        self.context = context
        self.chain = services.new_chain()
        self.sandbox = LazySandbox(
            lambda: services.sandboxes.create(lease.run_id, context.framework),
            seed=context.base.files if context.base else None,
        )
        self.content: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.lost = False
        self.last_flush = time.monotonic()
        self.deadline = time.monotonic() + self.settings.run_deadline
        self.watch = RunWatch(
            services.redis,
            lease.message_id,
            heartbeat=self._heartbeat,
            poll_interval=0.25,
            heartbeat_interval=self.settings.heartbeat_interval,
            on_cancel=self.sandbox.kill,
        )

    # -- the run ---------------------------------------------------------------------------

    def execute(self) -> str | None:
        self._publish(StatusEvent(Status.STREAMING))
        self._carry_over_earlier_attempt()
        with self.watch:
            try:
                outcome = run_agent(
                    self.context.messages,
                    self.chain,
                    self.sandbox,
                    self.emit,
                    self.cancelled,
                    max_steps=self.settings.agent_max_steps,
                )
            except Cancelled:
                return self._stopped()
            except ProviderError as exc:
                return self._fail("provider", str(exc.__cause__ or exc))
            except SandboxError as exc:
                return self._fail("internal", exc.message)
            except Exception as exc:
                log.exception("run %s failed", self.lease.run_id)
                return self._fail("internal", f"{type(exc).__name__}: {exc}")
            else:
                return self._complete(outcome)
            finally:
                if self.cancelled():
                    self.sandbox.kill()

    def _carry_over_earlier_attempt(self) -> None:
        """A re-run keeps what clients already saw, so the deltas still add up to the content.

        The stream is the record of what reached clients; the database may lag it by one flush.
        """
        if self.context.attempt <= 1:
            return
        streamed = self._streamed_text()
        earlier = streamed if streamed is not None else self.context.earlier_content
        if not earlier:
            return
        self.content.append(earlier)
        self.tool_calls.extend(dict(call) for call in self.context.earlier_tool_calls)
        if streamed is None:  # the stream was lost: clients rebuild from the database
            return
        self.emit(DeltaEvent("\n\n"))

    def _streamed_text(self) -> str | None:
        try:
            entries = self.services.events.read(self.lease.message_id, count=100_000)
        except redis.RedisError:
            return None
        if not entries:
            return None
        return "".join(data["text"] for _id, kind, data in entries if kind == "delta")

    def cancelled(self) -> bool:
        return self.watch.cancelled() or self.lost or time.monotonic() > self.deadline

    # -- what the loop reports -------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if self.cancelled():
            raise Cancelled()
        force = False
        if isinstance(event, DeltaEvent):
            self.content.append(event.text)
        elif isinstance(event, ToolCallEvent):
            self.tool_calls.append(
                {"id": event.id, "name": event.name, "args": event.args, "result": None}
            )
            force = True
        elif isinstance(event, ToolResultEvent):
            for call in self.tool_calls:
                if call["id"] == event.id:
                    call["result"] = event.result
            force = True
        self._publish(event)
        if force or time.monotonic() - self.last_flush >= self.settings.flush_interval:
            self._flush()

    def _flush(self) -> None:
        self.last_flush = time.monotonic()
        try:
            with transaction(self.services.db) as session:
                if not lifecycle.flush(session, self.lease, "".join(self.content), self.tool_calls):
                    self.lost = True
        except OperationalError:  # a database blip: what is not flushed goes with the next flush
            log.warning("could not flush %s; will try again", self.lease.message_id)

    def _write(self, write: Callable[[Session], T]) -> T:
        """A run's last write, retried through a database blip while its lease can still hold."""
        give_up = time.monotonic() + self.settings.stale_after
        delay = 0.2
        while True:
            try:
                with transaction(self.services.db) as session:
                    return write(session)
            except OperationalError:
                if time.monotonic() + delay > give_up:
                    raise  # the task fails; the reaper re-runs the run once its lease is stale
                log.warning("could not write the outcome of %s; retrying", self.lease.message_id)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _heartbeat(self) -> bool:
        with transaction(self.services.db) as session:
            return lifecycle.heartbeat(session, self.lease)

    def _publish(self, *events: Event) -> None:
        try:
            self.services.events.append(self.lease.message_id, *events)
        except redis.RedisError:  # the database keeps the outcome; live followers catch up from it
            log.warning("could not publish events of %s", self.lease.message_id, exc_info=True)

    def _finish_stream(self, status: str, *events: Event) -> None:
        try:
            self.services.events.finish(self.lease.message_id, status, *events)
        except redis.RedisError:
            log.warning("could not close the event stream of %s", self.lease.message_id)

    # -- endings ---------------------------------------------------------------------------

    def _metadata(self, **extra: Any) -> dict[str, Any]:
        meta = self.chain.metadata()
        meta["sandbox"] = self.sandbox.metadata or None
        meta.update(extra)
        return meta

    def _complete(self, outcome: Outcome) -> str | None:
        fragment_values = None
        keep_alive = False
        # The whole app: the base with this run's changes, read back from the workspace.
        produced = run_files(self.context.base, self.sandbox, outcome.files)
        if produced is not None:
            url = self.sandbox.preview()
            keep_alive = url is not None
            started = self.sandbox.started
            fragment_values = FragmentValues(
                title=outcome.title or self.context.prompt_text[:60],
                files=produced.files,
                framework=self.context.framework,
                sandbox_id=started.id if started else None,
                sandbox_url=url or f"{self.settings.public_url}/preview/{{fragment_id}}/",
                metadata=self._metadata(
                    summary=outcome.summary,
                    steps=outcome.steps,
                    stopReason=outcome.stop_reason,
                    **produced.metadata(self.context.base),
                ),
                image_url=self.context.image_url,
                parent_id=self.context.base.fragment_id if self.context.base else None,
                changes=first_changes(self.context.base, produced),
            )
        metadata = self._metadata(
            summary=outcome.summary,
            steps=outcome.steps,
            stopReason=outcome.stop_reason,
            title=outcome.title,
        )

        def write(session: Session) -> tuple[Any, dict[str, Any] | None]:
            written = lifecycle.complete(
                session,
                self.lease,
                content="".join(self.content),
                tool_calls=self.tool_calls,
                metadata=metadata,
                fragment=fragment_values,
            )
            return written, fragment_json(written) if isinstance(written, Fragment) else None

        # Released before the row says COMPLETE, so nothing of the run outlives its last status.
        self.sandbox.close(keep_alive=keep_alive)
        written, fragment = self._write(write)
        if written is False:
            self.sandbox.kill()
            return None
        tail: list[Event] = [FragmentEvent(fragment)] if fragment is not None else []
        self._finish_stream(Status.COMPLETE, *tail, StatusEvent(Status.COMPLETE))
        return Status.COMPLETE

    def _fail(self, kind: str, reason: str) -> str | None:
        self.sandbox.kill()
        content = "".join(self.content)
        tail: list[Event] = []
        if not content:
            # Clients rebuild content from the deltas, so the explanation is streamed too.
            content = FAILED_TEXT[kind]
            tail.append(DeltaEvent(content))
        error = reason[:500] or kind
        ok = self._write(
            lambda session: lifecycle.fail(
                session,
                self.lease,
                content=content,
                error=error,
                tool_calls=self.tool_calls,
                metadata=self._metadata(failure=kind),
            )
        )
        if not ok:
            return None
        self._finish_stream(Status.FAILED, *tail, ErrorEvent(error), StatusEvent(Status.FAILED))
        return Status.FAILED

    def _stopped(self) -> str | None:
        self.sandbox.kill()
        if self.watch.cancelled() and self.watch.reason == "cancelled":
            self._finish_stream(Status.CANCELLED)
            return Status.CANCELLED
        if not self.lost and time.monotonic() > self.deadline:
            return self._fail("deadline", "the run went past its deadline")
        return None
