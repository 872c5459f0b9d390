from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from flask import request

from orchestrator import contract, messages, ratelimit, send_prompt
from orchestrator.errors import InvalidRequest
from orchestrator.imports import start as imports
from orchestrator.messages import MessageView
from orchestrator.runs import cancellation
from web.api.common import json_body, storable, unit_of_work
from web.auth import current_user_id
from web.endpoints import Api, header
from web.errors import RunInProgress
from web.schemas import AttachmentBody, CancelMessage, ListMessages, SendMessage
from web.state import AppState, state
from workers.dispatch import enqueue_import, enqueue_run, revoke_run

bp = Api("messages", __name__)


class Success(contract.Shape):
    success: Literal[True] = True


IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_KEY = header(
    "Idempotency-Key",
    "A retry with the same key and body within 24 h returns the first answer; empty means no key.",
    maxLength=IDEMPOTENCY_KEY_MAX,
)
PAGE_HEADERS = {
    "Link": 'RFC 8288 links to the pages around this one: rel="prev" (older messages, '
    '`before=`) and rel="next" (newer, `after=`), when there are any',
    "X-Prev-Cursor": "The id to pass as `before` for older messages; absent when none",
    "X-Next-Cursor": "The id to pass as `after` for newer messages; absent when none",
}


@bp.operation(
    "GET /api/messages",
    answer=list[contract.ListedMessage],
    fails="404",
    query=ListMessages,
    headers=PAGE_HEADERS,
)
def index(query: ListMessages) -> Any:
    """A conversation's (or a project's) messages, oldest first, one page at a time."""
    with unit_of_work() as session:
        found = messages.list_messages(
            session,
            current_user_id(),
            project_id=query.project_id,
            conversation_id=query.conversation_id,
            page=query.page(),
        )
    shown = [listed(view, query.fragment_files) for view in found.views]
    headers, links = {}, []
    if found.views and found.older:
        first = found.views[0].message.id
        headers["X-Prev-Cursor"] = first
        links.append(f'<{page_url(before=first, limit=query.limit)}>; rel="prev"')
    if found.views and found.newer:
        last = found.views[-1].message.id
        headers["X-Next-Cursor"] = last
        links.append(f'<{page_url(after=last, limit=query.limit)}>; rel="next"')
    if links:
        headers["Link"] = ", ".join(links)
    return shown, headers


def listed(view: MessageView, files: Literal["files", "paths"]) -> contract.ListedMessage:
    shape = contract.FragmentPaths if files == "paths" else contract.Fragment
    fragment = shape.model_validate(view.fragment) if view.fragment else None
    message = contract.Message.model_validate(view.message)
    return contract.ListedMessage.of(message, code_fragment=fragment, attachments=view.attachments)


def page_url(**cursor: str | int) -> str:
    """This listing's URL for another page: the same scope and form, a new cursor."""
    kept = ("projectId", "conversationId", "fragmentFiles")
    scope = {k: v for k, v in request.args.items() if k in kept}
    return f"{request.base_url}?{urlencode({**scope, **cursor})}"


@bp.operation("GET /api/messages/<message_id>", answer=contract.Message, fails="404")
def show(message_id: str) -> Any:
    """One message."""
    with unit_of_work() as session:
        return messages.get_message(session, current_user_id(), message_id)


@bp.operation(
    "POST /api/messages",
    answer=contract.SentMessage,
    status=201,
    also={409: RunInProgress},
    fails="402 403 404 422 429 503",
    body=SendMessage,
    params=(IDEMPOTENCY_KEY,),
)
def send(body: SendMessage) -> Any:
    """Send a prompt: store the turn, spend a credit, enqueue the run."""
    accepted = accept(body)
    user_message = accepted.user_message
    if user_message is None:  # a replay: the stored turn is the first answer
        with unit_of_work() as session:
            user_message = messages.get_message(
                session, current_user_id(), accepted.user_message_id
            )
    sent = {"run_id": accepted.run_id, "message_id": accepted.assistant_message_id}
    return contract.SentMessage.of(contract.Message.model_validate(user_message), **sent)


def accept(body: SendMessage) -> send_prompt.PromptAccepted:
    """A prompt through every rule of `POST /api/messages` (rate limit, Idempotency-Key, credits
    and 402, 409 with the running message, the queue): `POST /api/chat` sends through it too."""
    key = idempotency_key()
    app = state()
    slot = ratelimit.check(app.redis, current_user_id(), app.settings.rate_limit_per_minute)
    try:
        accepted = _send(app, body, key)
    except Exception:
        ratelimit.release(app.redis, current_user_id(), slot)  # only accepted prompts count
        raise
    if accepted.replayed:
        ratelimit.release(app.redis, current_user_id(), slot)
    return accepted


def _send(app: AppState, body: SendMessage, key: str | None) -> send_prompt.PromptAccepted:
    return send_prompt.send_prompt(
        app.db,
        send_prompt.PromptRequest(
            user_id=current_user_id(),
            text=body.text,
            project_id=body.project_id,
            conversation_id=body.conversation_id,
            image_url=body.image_url,
            attachments=tuple(a.to_input() for a in body.attachments),
            idempotency_key=key,
            # Only a keyed retry is compared with the first body; skip the hash otherwise.
            body_hash=hashlib.sha256(json.dumps(json_body(), sort_keys=True).encode()).hexdigest()
            if key
            else "",
        ),
        default_credits=app.settings.default_credits,
        idempotency_ttl=timedelta(hours=app.settings.idempotency_ttl_hours),
        dispatch=lambda message_id, run_id: enqueue_run(app.celery, message_id, run_id),
        max_runs=app.settings.max_runs_per_user,
        plan_import=imports.for_attachment(app.settings),
        dispatch_import=lambda import_id: enqueue_import(app.celery, import_id),
    )


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and (len(key) > IDEMPOTENCY_KEY_MAX or not storable(key)):
        raise InvalidRequest(
            f"Idempotency-Key must be at most {IDEMPOTENCY_KEY_MAX} characters, without NUL"
        )
    return key


@bp.operation("DELETE /api/messages", answer=Success, fails="404 409 503", body=CancelMessage)
def cancel(body: CancelMessage) -> Any:
    """Cancel a generation."""
    return cancel_run(body.message_id)


@bp.operation("DELETE /api/messages/<message_id>", answer=Success, fails="404 409 503")
def cancel_one(message_id: str) -> Any:
    """Cancel a generation."""
    return cancel_run(message_id)


def cancel_run(message_id: str) -> Success:
    app = state()
    cancellation.cancel_run(
        app.db,
        app.redis,
        app.events,
        current_user_id(),
        message_id,
        revoke=lambda run_id: revoke_run(app.celery, run_id),
    )
    return Success()


@bp.operation(
    "GET /api/messages/<message_id>/fragment",
    answer=contract.Fragment | None,
    fails="404",
    tag="fragments",
)
def fragment(message_id: str) -> Any:
    """The message's fragment."""
    with unit_of_work() as session:
        return messages.message_fragment(session, current_user_id(), message_id)


@bp.operation(
    "GET /api/messages/<message_id>/attachments",
    answer=list[contract.Attachment],
    fails="404",
    tag="attachments",
)
def attachments(message_id: str) -> Any:
    """The message's attachments."""
    with unit_of_work() as session:
        return messages.list_attachments(session, current_user_id(), message_id)


@bp.operation(
    "POST /api/messages/<message_id>/attachments",
    answer=contract.Attachment,
    status=201,
    fails="404",
    body=AttachmentBody,
    tag="attachments",
)
def add_attachment(message_id: str, body: AttachmentBody) -> Any:
    """Add an attachment."""
    with unit_of_work() as session:
        return messages.add_attachment(session, current_user_id(), message_id, body.to_input())
