from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from models import Fragment
from orchestrator import messages, ratelimit, send_prompt
from orchestrator.errors import InvalidRequest
from orchestrator.messages import MessageView
from orchestrator.runs import cancellation
from orchestrator.serialize import attachment_json, fragment_json, message_json
from web.api.common import json_body, parse, storable, unit_of_work
from web.auth import current_user_id, require_user
from web.schemas import AttachmentBody, CancelMessage, SendMessage
from web.state import AppState, state
from workers.dispatch import enqueue_run, revoke_run

bp = Blueprint("messages", __name__)


def listed(view: MessageView) -> dict[str, Any]:
    body = message_json(view.message)
    body["codeFragment"] = listed_fragment(view.fragment) if view.fragment else None
    body["attachments"] = [attachment_json(a) for a in view.attachments]
    return body


def listed_fragment(fragment: Fragment) -> dict[str, Any]:
    """A fragment in a listing: its file paths instead of their contents, which
    GET /api/messages/<id>/fragment serves, so a page's size does not grow with the code."""
    body = fragment_json(fragment)
    body["filePaths"] = sorted(body.pop("files"))
    return body


@bp.get("/api/messages")
@require_user
def index() -> ResponseReturnValue:
    project_id = request.args.get("projectId")
    conversation_id = request.args.get("conversationId")
    page = page_of(request.args)
    with unit_of_work() as session:
        found = messages.list_messages(
            session,
            current_user_id(),
            project_id=project_id,
            conversation_id=conversation_id,
            page=page,
        )
        response = jsonify([listed(v) for v in found.views])
    links = []
    if found.views and found.older:
        first = found.views[0].message.id
        response.headers["X-Prev-Cursor"] = first
        links.append(f'<{page_url(before=first, limit=page.limit)}>; rel="prev"')
    if found.views and found.newer:
        last = found.views[-1].message.id
        response.headers["X-Next-Cursor"] = last
        links.append(f'<{page_url(after=last, limit=page.limit)}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return response


def page_of(args: Mapping[str, str]) -> messages.Page:
    raw = args.get("limit")
    limit = messages.DEFAULT_PAGE
    if raw is not None:
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= messages.MAX_PAGE:
            raise InvalidRequest(f"limit must be a whole number from 1 to {messages.MAX_PAGE}")
        limit = int(raw)
    before, after = args.get("before") or None, args.get("after") or None
    if before and after:
        raise InvalidRequest("give before or after, not both")
    for cursor in (before, after):
        if cursor is not None and (len(cursor) > 255 or not storable(cursor)):
            raise InvalidRequest("before and after are message ids")
    return messages.Page(limit=limit, before=before, after=after)


def page_url(**cursor: str | int) -> str:
    """This listing's URL for another page: the same scope, a new cursor."""
    kept = {k: v for k, v in request.args.items() if k in ("projectId", "conversationId")}
    return f"{request.base_url}?{urlencode({**kept, **cursor})}"


@bp.get("/api/messages/<message_id>")
@require_user
def show(message_id: str) -> ResponseReturnValue:
    with unit_of_work() as session:
        return jsonify(message_json(messages.get_message(session, current_user_id(), message_id)))


@bp.post("/api/messages")
@require_user
def send() -> ResponseReturnValue:
    raw = json_body()
    body = parse(SendMessage, raw)
    text = (body.message if body.message is not None else body.value or "").strip()
    if not 3 <= len(text) <= 1000:
        raise InvalidRequest("message must be 3 to 1000 characters")
    if not body.projectId and not body.conversationId:
        raise InvalidRequest("projectId or conversationId is required")
    key = idempotency_key()
    app = state()
    slot = ratelimit.check(app.redis, current_user_id(), app.settings.rate_limit_per_minute)
    try:
        accepted = _send(app, raw, text, body, key)
    except Exception:
        ratelimit.release(app.redis, current_user_id(), slot)  # only accepted prompts count
        raise
    if accepted.replayed:
        ratelimit.release(app.redis, current_user_id(), slot)
    user_message = accepted.user_message
    if user_message is None:  # a replay: the stored turn is the first answer
        with unit_of_work() as session:
            user_message = messages.get_message(
                session, current_user_id(), accepted.user_message_id
            )
    answer = message_json(user_message)
    answer.update(success=True, runId=accepted.run_id, messageId=accepted.assistant_message_id)
    return jsonify(answer), 201


def _send(
    app: AppState, raw: Any, text: str, body: SendMessage, key: str | None
) -> send_prompt.PromptAccepted:
    return send_prompt.send_prompt(
        app.db,
        send_prompt.PromptRequest(
            user_id=current_user_id(),
            text=text,
            project_id=body.projectId,
            conversation_id=body.conversationId,
            image_url=body.imageUrl,
            attachments=tuple(a.to_input() for a in body.attachments),
            idempotency_key=key,
            # Only a keyed retry is compared with the first body; skip the hash otherwise.
            body_hash=hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
            if key
            else "",
        ),
        default_credits=app.settings.default_credits,
        idempotency_ttl=timedelta(hours=app.settings.idempotency_ttl_hours),
        dispatch=lambda message_id, run_id: enqueue_run(app.celery, message_id, run_id),
        max_runs=app.settings.max_runs_per_user,
    )


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and (len(key) > 255 or not storable(key)):
        raise InvalidRequest("Idempotency-Key must be at most 255 characters, without NUL")
    return key


@bp.delete("/api/messages")
@bp.delete("/api/messages/<message_id>")
@require_user
def cancel(message_id: str | None = None) -> ResponseReturnValue:
    if message_id is None:
        message_id = parse(CancelMessage).messageId
    app = state()
    cancellation.cancel_run(
        app.db,
        app.redis,
        app.events,
        current_user_id(),
        message_id,
        revoke=lambda run_id: revoke_run(app.celery, run_id),
    )
    return jsonify({"success": True})


@bp.get("/api/messages/<message_id>/fragment")
@require_user
def fragment(message_id: str) -> ResponseReturnValue:
    with unit_of_work() as session:
        found = messages.message_fragment(session, current_user_id(), message_id)
        return jsonify(fragment_json(found) if found else None)


@bp.get("/api/messages/<message_id>/attachments")
@require_user
def attachments(message_id: str) -> ResponseReturnValue:
    with unit_of_work() as session:
        found = messages.list_attachments(session, current_user_id(), message_id)
        return jsonify([attachment_json(a) for a in found])


@bp.post("/api/messages/<message_id>/attachments")
@require_user
def add_attachment(message_id: str) -> ResponseReturnValue:
    body = parse(AttachmentBody)
    with unit_of_work() as session:
        added = messages.add_attachment(session, current_user_id(), message_id, body.to_input())
        return jsonify(attachment_json(added)), 201
