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

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception_type, stop_before_delay, wait_exponential

from models import Fragment, Status, transaction
from orchestrator import metrics
from orchestrator.checks.result import still_failing
from orchestrator.checks.rounds import Rounds
from orchestrator.contract import fragment_json
from orchestrator.errors import ProviderError, SandboxError
from orchestrator.providers.base import Cancelled
from orchestrator.run_services import RunServices
from orchestrator.runs import lifecycle
from orchestrator.runs.agent import Outcome, run_agent
from orchestrator.runs.cancellation import RunWatch
from orchestrator.runs.context import RunContext, load_context
from orchestrator.runs.lifecycle import FragmentValues, Lease
from orchestrator.runs.recorder import Recorder
from orchestrator.runs.tools import Workspace
from orchestrator.sandboxes.base import Builds, ChecksFrameworks
from orchestrator.sandboxes.lazy import LazySandbox
from orchestrator.sandboxes.templates import TemplateNotPrepared
from orchestrator.stop import StopReason
from orchestrator.streams.events import (
    DeltaEvent,
    ErrorEvent,
    Event,
    FragmentEvent,
    StatusEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from orchestrator.versions.result import RunFiles, first_changes, run_files

log = logging.getLogger(__name__)

T = TypeVar("T")

# The tool call id of the build the worker runs when the model left its last change unbuilt,
# and the time that build gets (what the system prompt tells the model to give one).
FINAL_BUILD_ID = "final_build"
FINAL_BUILD_TIMEOUT = 180.0

FAILED_TEXT = {
    "provider": "Sorry, the AI service is unavailable right now, so this request could not be "
    "completed. Your credit was refunded; please try again in a moment.",
    "deadline": "Sorry, this request took too long and was stopped. Your credit was refunded.",
    "internal": "Sorry, something went wrong while generating a reply. Your credit was refunded; "
    "please try again.",
}


def execute_run(services: RunServices, message_id: str, run_id: str) -> str | None:
    """Run the agent for one assistant message. Returns its final status, or None if not ours."""
    with transaction(services.db) as session:
        lease = lifecycle.claim(session, message_id, run_id)
    if lease is None:
        log.info("run %s of %s is not pending any more; nothing to do", run_id, message_id)
        return None
    with transaction(services.db) as session:
        context = load_context(session, message_id, services.sandboxes.serves)
    run = _Run(services, lease, context)
    status = None
    try:
        status = run.execute()
        return status
    finally:  # metrics (orchestrator/metrics.py)
        metrics.run_ended(run.metrics, status, run.chain, services.redis, message_id)


@dataclass(frozen=True)
class Completed:
    outcome: Outcome
    # The whole app as the run leaves it, or None when it changed nothing.
    produced: RunFiles | None


@dataclass(frozen=True)
class Failed:
    kind: str  # a key of FAILED_TEXT, or "unprepared" (with its own text)
    reason: str
    # What the user reads instead of FAILED_TEXT[kind], when the reason is theirs to act on.
    text: str | None = None


@dataclass(frozen=True)
class Stopped:
    """Cancelled, past the deadline, or lost to another writer: the run's `stop.reason` says."""


Ending = Completed | Failed | Stopped


class RunStop:
    """The run's Stop for the agent loop, the provider and the checks.

    Requested when the hub trips the run's watch (the user's cancel, or a heartbeat that found
    the run no longer ours), when a flush found the run lost, or past the run's deadline. Only
    the watch wakes waiters: the other two are found by looking.
    """

    def __init__(self, watch: RunWatch, record: Recorder, deadline: float) -> None:
        self.watch = watch
        self.record = record
        self.deadline = deadline

    @property
    def reason(self) -> StopReason | None:
        if self.watch.reason == "cancelled":
            return "cancelled"
        if self.watch.reason == "lost" or self.record.lost:
            return "lost"
        if time.monotonic() > self.deadline:
            return "deadline"
        return None

    def requested(self) -> bool:
        return self.reason is not None

    def on_request(self, wake: Callable[[], None]) -> Callable[[], None]:
        return self.watch.on_request(wake)


class _Run:
    """One run's parts and its work: the agent, then what it leaves checked and built.

    execute = work -> `end_run`, the one way out (the final state written through lifecycle, the
    sandbox released whatever happened in between).
    """

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
        self.record = Recorder(
            services.db,
            services.events,
            lease,
            flush_interval=self.settings.flush_interval,
            publisher=services.publisher,
            flushed_by_process=True,
        )
        services.flusher.add(self.record)
        # Set once the sandbox was closed as a COMPLETE run wants it (a kept-alive preview).
        self.released = False
        # Set when the worker ran the version's build (the model left its change unbuilt).
        self.final_build = False
        self.final_builds = 0
        self.deadline = time.monotonic() + self.settings.run_deadline
        # Set just before a COMPLETE run writes its ending: from then on the sandbox is the
        # ending's to keep (a preview) or to kill (the write found the run no longer ours).
        self.ending = False
        self.watch = RunWatch(services.hub, lease, on_cancel=self._on_trip)
        self.stop = RunStop(self.watch, self.record, self.deadline)
        self.metrics = metrics.RunMetrics()
        self.checks = Rounds(
            services.checker,
            max_repairs=self.settings.check_max_rounds,
            started=lambda: self.sandbox.started,
            build=self._build_if_unbuilt,
            emit=self.emit,
            stop=self.stop,
        )

    def execute(self) -> str | None:
        self.record.publish_now(StatusEvent(Status.STREAMING))
        if self.context.attempt > 1:
            self.record.carry_over(self.context.earlier_content, self.context.earlier_tool_calls)
        with self.watch:
            return end_run(self, self._work)

    def _work(self) -> Ending:
        try:
            factory = self.services.sandboxes
            if isinstance(factory, ChecksFrameworks):  # before the model: no tokens for nothing
                factory.check_ready(self.context.framework)
            outcome = run_agent(
                self.context.messages,
                self.chain,
                self.sandbox,
                self.emit,
                self.stop,
                max_steps=self.settings.agent_max_steps,
                on_finish=self.checks.after_finish,
            )
            if outcome.stop_reason == "max_steps":
                self.checks.run()  # out of steps: what it leaves is checked, not repaired
            produced = run_files(self.context.base, self.sandbox, outcome.files)
            if produced is not None:
                self._build_if_unbuilt(produced.files)
        except Cancelled:
            return Stopped()
        except ProviderError as exc:
            return Failed("provider", str(exc.__cause__ or exc))
        except TemplateNotPrepared as exc:
            return Failed("unprepared", exc.message, f"{exc.message} Your credit was refunded.")
        except SandboxError as exc:
            return Failed("internal", exc.message)
        except Exception as exc:
            log.exception("run %s failed", self.lease.run_id)
            return Failed("internal", f"{type(exc).__name__}: {exc}")
        return Completed(outcome, produced)

    def _on_trip(self) -> None:
        """A cancel, or a heartbeat that found the run no longer ours: stop its commands now.

        Not once the run is writing its ending: a heartbeat between the COMPLETE write and the
        run leaving the hub finds the row no longer STREAMING and trips the watch, and must not
        kill the preview the ending kept alive. A cancel that wins against that write makes it
        find the run no longer ours, and `end_run` kills the sandbox then.
        """
        if not self.ending:
            self.sandbox.kill()

    def emit(self, event: Event) -> None:
        if self.stop.requested():
            raise Cancelled()
        if isinstance(event, DeltaEvent):
            self.metrics.delta()
        self.record.record(event)

    def _build_if_unbuilt(self, sources: dict[str, str]) -> None:
        """A built app's version is previewed from a build of exactly its sources: when the
        model changed a file after its last build, or never built, the worker runs the build
        once more itself, as a step the client sees (a `run_command` tool call)."""
        started = self.sandbox.started
        if not isinstance(started, Builds) or started.build_command is None:
            return
        if started.built(sources):
            return
        left = max(self.deadline - time.monotonic() - 5, 1.0)  # past the deadline: Stopped
        args = {"command": started.build_command, "timeout": min(FINAL_BUILD_TIMEOUT, left)}
        # One per repair round (DESIGN section 16) at most, each its own call.
        call_id = FINAL_BUILD_ID + (f"_{self.final_builds + 1}" if self.final_builds else "")
        self.emit(ToolCallEvent(call_id, "run_command", args))
        result = Workspace(self.sandbox).call("run_command", args)  # never raises
        self.emit(ToolResultEvent(call_id, result))
        self.final_build = True
        self.final_builds += 1


# -- the one way out of a run ----------------------------------------------------------------


def end_run(run: _Run, work: Callable[[], Ending]) -> str | None:
    """Do the run's `work`, then write its ending: COMPLETE, FAILED, CANCELLED, or nothing when
    the run is not ours any more. Whatever happened in between (even the worker going down while
    it works), nothing of the run outlives it: its sandbox is killed unless a COMPLETE run kept
    it alive as the preview, and its recorder is closed. Returns the status written."""
    try:
        ending = work()
        if isinstance(ending, Completed):
            try:
                return _complete(run, ending.outcome, ending.produced)
            except Exception as exc:  # the preview, the sandbox's close, the final write
                log.exception("run %s failed while completing", run.lease.run_id)
                if run.stop.requested():
                    return _stopped(run)
                return _fail(run, "internal", f"while completing: {type(exc).__name__}: {exc}")
        if isinstance(ending, Failed):
            return _fail(run, ending.kind, ending.reason, ending.text)
        return _stopped(run)
    finally:
        if not run.released:
            _kill_sandbox(run)
        run.record.close()


def _complete(run: _Run, outcome: Outcome, produced: RunFiles | None) -> str | None:
    fragment_values = None
    keep_alive = False
    # `produced`: the whole app, the base with this run's changes, read back from the workspace.
    if produced is not None:
        if run.checks.failed and run.checks.last is not None:
            # Saved all the same (the user can look and ask for more), saying what fails.
            run.emit(DeltaEvent(still_failing(run.checks.last)))
        url = run.sandbox.preview()
        keep_alive = url is not None
        started = run.sandbox.started
        build, build_files = _build_of(started, by_worker=run.final_build)
        fragment_values = FragmentValues(
            title=outcome.title or run.context.prompt_text[:60],
            files=produced.files,
            framework=run.context.framework,
            sandbox_id=started.id if started else None,
            sandbox_url=url or f"{run.settings.public_url}/preview/{{fragment_id}}/",
            metadata=_metadata(
                run,
                summary=outcome.summary,
                steps=outcome.steps,
                stopReason=outcome.stop_reason,
                **produced.metadata(run.context.base),
                **build,
                checks=run.checks.metadata(),
            ),
            image_url=run.context.image_url,
            parent_id=run.context.base.fragment_id if run.context.base else None,
            changes=first_changes(run.context.base, produced),
            build_files=build_files,
            screenshot=run.checks.screenshot,
        )
    metadata = _metadata(
        run,
        summary=outcome.summary,
        steps=outcome.steps,
        stopReason=outcome.stop_reason,
        title=outcome.title,
    )

    def write(session: Session) -> tuple[Any, dict[str, Any] | None]:
        written = lifecycle.complete(
            session,
            run.lease,
            content=run.record.text,
            tool_calls=run.record.tool_calls,
            metadata=metadata,
            fragment=fragment_values,
        )
        return written, fragment_json(written) if isinstance(written, Fragment) else None

    # Released before the row says COMPLETE, so nothing of the run outlives its last status.
    run.ending = True
    run.sandbox.close(keep_alive=keep_alive)
    written, fragment = _write(run, write)
    if written is False:
        return None  # not ours any more: end_run kills what close() kept alive
    run.released = True
    tail: list[Event] = [FragmentEvent(fragment)] if fragment is not None else []
    run.record.finish_stream(Status.COMPLETE, *tail, StatusEvent(Status.COMPLETE))
    return Status.COMPLETE


def _fail(run: _Run, kind: str, reason: str, text: str | None = None) -> str | None:
    _kill_sandbox(run)
    content = run.record.text
    tail: list[Event] = []
    if not content:
        # Clients rebuild content from the deltas, so the explanation is streamed too.
        content = text or FAILED_TEXT[kind]
        tail.append(DeltaEvent(content))
    error = reason[:500] or kind
    ok = _write(
        run,
        lambda session: lifecycle.fail(
            session,
            run.lease,
            content=content,
            error=error,
            tool_calls=run.record.tool_calls,
            metadata=_metadata(run, failure=kind),
        ),
    )
    if not ok:
        return None
    run.record.finish_stream(Status.FAILED, *tail, ErrorEvent(error), StatusEvent(Status.FAILED))
    return Status.FAILED


def _stopped(run: _Run) -> str | None:
    _kill_sandbox(run)
    reason = run.stop.reason
    if reason == "cancelled":
        run.record.finish_stream(Status.CANCELLED)
        return Status.CANCELLED
    if reason == "deadline":
        return _fail(run, "deadline", "the run went past its deadline")
    return None  # lost: the run is another writer's now


def _write(run: _Run, write: Callable[[Session], T]) -> T:
    """A run's last write, retried through a database blip while its lease can still hold.

    Past `stale_after` the task fails; the reaper re-runs the run once its lease is stale.
    """

    def attempt() -> T:
        with transaction(run.services.db) as session:
            return write(session)

    retrying = Retrying(
        retry=retry_if_exception_type(OperationalError),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        stop=stop_before_delay(run.settings.stale_after),
        before_sleep=lambda _: log.warning(
            "could not write the outcome of %s; retrying", run.lease.message_id
        ),
        reraise=True,
    )
    return retrying(attempt)


def _kill_sandbox(run: _Run) -> None:
    try:
        run.sandbox.kill()
    except Exception:  # kill() must not raise; if it does, the ending still stands
        log.exception("could not kill the sandbox of run %s", run.lease.run_id)


def _metadata(run: _Run, **extra: Any) -> dict[str, Any]:
    meta = run.chain.metadata()
    meta["sandbox"] = run.sandbox.metadata or None
    meta.update(extra)
    return meta


def _build_of(
    sandbox: object, by_worker: bool = False
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """A built app's `metadata.build` and the output its preview serves (none for static)."""
    if not isinstance(sandbox, Builds):
        return {}, None
    output = sandbox.build_output()
    build: dict[str, Any] = {}
    if sandbox.build is not None:
        build["build"] = dict(sandbox.build)
        if by_worker:
            build["build"]["by"] = "worker"
    if output is not None and output.skipped:
        build["buildSkipped"] = output.skipped[:50]
    return build, output.files if output is not None else None
