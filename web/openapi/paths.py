"""The operations of the OpenAPI description, one function per group of paths."""

from __future__ import annotations

from typing import Any

from web.openapi.components import BEARER, JSON, PUBLIC, array, nullable, ref, shape


def answer(description: str, schema: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, **extra}
    if schema is not None:
        out["content"] = {JSON: {"schema": schema}}
    return out


def failure(description: str, schema: str = "Error", **extra: Any) -> dict[str, Any]:
    return answer(description, ref(schema), **extra)


FAILURES = {
    "400": failure("Invalid body, parameters or JSON"),
    "401": failure("No valid bearer token"),
    "402": failure("Out of credits"),
    "403": failure("The plan does not allow it"),
    "404": failure("Missing, or not the caller's"),
    "409": failure("The state forbids it"),
    "413": failure("Body over 1 MiB"),
    "422": failure("Idempotency-Key reused with a different body"),
    "429": failure(
        "Too many prompts in the window",
        headers={
            "Retry-After": {
                "description": "Seconds to wait",
                "required": True,
                "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
            }
        },
    ),
    "503": failure("The queue, the database or Redis cannot be reached"),
}


def operation(
    summary: str,
    tag: str,
    answers: dict[str, Any],
    failures: str,
    *,
    security: list[dict[str, list[str]]] = BEARER,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One operation; `failures` lists its error statuses, e.g. "400 401 404"."""
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "security": security,
        "responses": {**answers, **{code: FAILURES[code] for code in failures.split()}},
    }
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(body)}}}
    return op


def path_id(name: str) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def query(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


MESSAGE_ID = path_id("messageId")
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key and body within 24 h returns the first answer; "
    "empty means no key.",
    "schema": {"type": "string", "maxLength": 255},
}
PAGE_HEADERS = {
    "Link": {
        "description": 'RFC 8288 links to the pages around this one: rel="prev" (older '
        'messages, `before=`) and rel="next" (newer, `after=`), when there are any',
        "schema": {"type": "string"},
    },
    "X-Prev-Cursor": {
        "description": "The id to pass as `before` for older messages; absent when none",
        "schema": {"type": "string"},
    },
    "X-Next-Cursor": {
        "description": "The id to pass as `after` for newer messages; absent when none",
        "schema": {"type": "string"},
    },
}
SSE = (
    "Server-sent events (DESIGN section 6): each has `id` (the stream id), `event` (status, "
    "delta, tool_call, tool_result, fragment, error, done) and `data` (JSON). `done` is last."
)


def resource_paths() -> dict[str, Any]:
    return {
        "/api/me": {
            "get": operation("Who am I", "users", {"200": answer("The caller", ref("Me"))}, "401")
        },
        "/api/projects": {
            "get": operation(
                "List own projects",
                "projects",
                {"200": answer("Projects", array("Project"))},
                "401",
            ),
            "post": operation(
                "Create a project",
                "projects",
                {"201": answer("Created", ref("Project"))},
                "400 401 413",
                body="CreateProject",
            ),
        },
        "/api/projects/{projectId}": {
            "get": operation(
                "Get a project",
                "projects",
                {"200": answer("The project", ref("Project"))},
                "400 401 404",
                parameters=[path_id("projectId")],
            )
        },
        "/api/conversations": {
            "get": operation(
                "List a project's conversations, newest activity first",
                "conversations",
                {"200": answer("Conversations", array("Conversation"))},
                "400 401 404",
                parameters=[query("projectId", "The project", required=True)],
            ),
            "post": operation(
                "Create a conversation",
                "conversations",
                {"201": answer("Created", ref("Conversation"))},
                "400 401 404 413",
                body="CreateConversation",
            ),
        },
    }


def message_paths() -> dict[str, Any]:
    post = operation(
        "Send a prompt: store the turn, spend a credit, enqueue the run",
        "messages",
        {"201": answer("The stored user turn, with the run and assistant ids", ref("SentMessage"))},
        "400 401 402 403 404 413 422 429 503",
        body="SendMessage",
        parameters=[IDEMPOTENCY_KEY],
    )
    post["responses"]["409"] = failure("A run of this conversation is in progress", "RunInProgress")
    return {
        "/api/messages": {
            "get": operation(
                "A conversation's (or a project's) messages, oldest first, one page at a time",
                "messages",
                {"200": answer("A page of messages", array("ListedMessage"), headers=PAGE_HEADERS)},
                "400 401 404",
                parameters=[
                    query("projectId", "One of projectId and conversationId is required"),
                    query("conversationId", "One of projectId and conversationId is required"),
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Messages per page: 50 by default, at most 200",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                    query("before", "A message id: the page of messages just before it"),
                    query("after", "A message id: the page of messages just after it"),
                ],
            ),
            "post": post,
            "delete": operation(
                "Cancel a generation",
                "messages",
                {"200": answer("Cancelled", ref("Success"))},
                "400 401 404 409 413 503",
                body="CancelMessage",
            ),
        },
        "/api/messages/{messageId}": {
            "get": operation(
                "One message",
                "messages",
                {"200": answer("The message", ref("Message"))},
                "400 401 404",
                parameters=[MESSAGE_ID],
            ),
            "delete": operation(
                "Cancel a generation",
                "messages",
                {"200": answer("Cancelled", ref("Success"))},
                "400 401 404 409 503",
                parameters=[MESSAGE_ID],
            ),
        },
        "/api/messages/{messageId}/events": {
            "get": operation(
                "The run's live event stream, resumable",
                "events",
                {
                    "200": {
                        "description": SSE,
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                "400 401 404 503",
                # EventSource cannot send headers: a stream token in the query works instead.
                security=[{"bearerAuth": []}, {"eventsToken": []}],
                parameters=[
                    MESSAGE_ID,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "Resume after this stream id",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "lastEventId",
                        "in": "query",
                        "required": False,
                        "description": "Resume after this stream id (for EventSource)",
                        "schema": {"type": "string"},
                    },
                ],
            )
        },
        "/api/messages/{messageId}/events/token": {
            "post": operation(
                "A token for this message's event stream alone, valid at most 5 minutes",
                "events",
                {"200": answer("The token, for `?token=`", ref("EventsToken"))},
                "400 401 404 503",
                parameters=[MESSAGE_ID],
            )
        },
        "/api/messages/{messageId}/fragment": {
            "get": operation(
                "The message's fragment",
                "fragments",
                {"200": answer("The fragment, or null", nullable(ref("Fragment")))},
                "400 401 404",
                parameters=[MESSAGE_ID],
            )
        },
        "/api/messages/{messageId}/attachments": {
            "get": operation(
                "The message's attachments",
                "attachments",
                {"200": answer("Attachments", array("Attachment"))},
                "400 401 404",
                parameters=[MESSAGE_ID],
            ),
            "post": operation(
                "Add an attachment",
                "attachments",
                {"201": answer("Added", ref("Attachment"))},
                "400 401 404 413",
                body="AttachmentBody",
                parameters=[MESSAGE_ID],
            ),
        },
    }


def fragment_paths() -> dict[str, Any]:
    fragment_id = path_id("fragmentId")
    return {
        "/api/fragments/{fragmentId}": {
            "get": operation(
                "A fragment, shared publicly by its unguessable id",
                "fragments",
                {"200": answer("The fragment, without internal details", ref("PublicFragment"))},
                "400 404",
                security=PUBLIC,
                parameters=[fragment_id],
            )
        },
        "/api/fragments/{fragmentId}/full": {
            "get": operation(
                "A fragment with its message and project, for its owner",
                "fragments",
                {"200": answer("The fragment, message and project", ref("FragmentWithOwner"))},
                "400 401 404",
                parameters=[fragment_id],
            )
        },
        "/preview/{fragmentId}/{path}": {
            "get": operation(
                "The fragment's files served as a site (the local sandbox's sandboxUrl)",
                "fragments",
                {"200": {"description": "The file, with its content type"}},
                "400 404",
                security=PUBLIC,
                parameters=[
                    fragment_id,
                    {
                        "name": "path",
                        "in": "path",
                        "required": True,
                        "description": "A file path; empty for index.html",
                        "schema": {"type": "string"},
                    },
                ],
            )
        },
    }


def version_paths() -> dict[str, Any]:
    """DESIGN section 12: every fragment is a version of its project's app; owner-only."""
    fragment_id = path_id("fragmentId")
    restore = operation(
        "Make this version the latest again: a new version with its files, on an assistant "
        "message in the conversation (default: the project's default one). No credit, no model.",
        "versions",
        {"201": answer("The new message and its fragment", ref("Restored"))},
        "400 401 404 413",
        body="RestoreFragment",
        parameters=[fragment_id],
    )
    restore["responses"]["409"] = failure(
        "A run of that conversation is in progress", "RunInProgress"
    )
    return {
        "/api/projects/{projectId}/versions": {
            "get": operation(
                "The project's versions, oldest first, without files",
                "versions",
                {"200": answer("Versions", array("Version"))},
                "400 401 404",
                parameters=[path_id("projectId")],
            )
        },
        "/api/fragments/{fragmentId}/diff": {
            "get": operation(
                "What this version changed against its parent, as unified diffs",
                "versions",
                {"200": answer("The changed files", ref("Diff"))},
                "400 401 404",
                parameters=[fragment_id],
            )
        },
        "/api/fragments/{fragmentId}/restore": {"post": restore},
        "/api/fragments/{fragmentId}/sandbox": {
            "post": operation(
                "A live preview of this version (E2B: its sandbox if alive, else a new one)",
                "versions",
                {"200": answer("Where the preview answers", ref("LivePreview"))},
                "400 401 404 503",
                parameters=[fragment_id],
            )
        },
    }


def operations_paths() -> dict[str, Any]:
    status = shape({"status": {"type": "string"}}, ["status"])
    status["additionalProperties"] = {"type": "string"}
    return {
        "/healthz": {
            "get": operation(
                "Liveness", "operations", {"200": answer("Alive", status)}, "", security=PUBLIC
            )
        },
        "/readyz": {
            "get": operation(
                "Readiness: the database and Redis answer",
                "operations",
                {"200": answer("Ready", status), "503": answer("Not ready", status)},
                "",
                security=PUBLIC,
            )
        },
        "/metrics": {
            "get": operation(
                "Prometheus metrics",
                "operations",
                {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}},
                "",
                security=PUBLIC,
            )
        },
    }
