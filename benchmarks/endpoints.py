"""What the one contract costs: a declared endpoint, and a page written by the contract's models.

    .venv/bin/python -m benchmarks.endpoints [--requests 2000] [--files 50]

1. A POST with a body model and an answer model, through Flask's test client: declared with
   `web.endpoints` against the same view written by hand (parse the JSON, validate, jsonify).
2. A page of GET /api/messages (50 messages, every other one with a fragment of `--files` files
   of 2 kB, each with an attachment) written as JSON text by `orchestrator.contract` against
   dicts built by hand, as `orchestrator/serialize.py` did before the contract. Rows are built
   in memory, no database.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from flask import Flask, jsonify

from models import Attachment, Fragment, Message
from orchestrator import contract
from web.api.common import json_body, parse
from web.endpoints import Api
from web.schemas import Body


class Send(Body):
    message: str
    project_id: str


class Sent(contract.Shape):
    id: str
    success: Literal[True] = True


def apps() -> dict[str, Flask]:
    by_hand, declared = Flask("by_hand"), Flask("declared")

    @by_hand.post("/m")
    def send_by_hand() -> Any:
        body = parse(Send, json_body())
        return jsonify(Sent(id=body.project_id).wire()), 201

    bp = Api("bench", __name__)

    @bp.operation("POST /m", answer=Sent, status=201, body=Send, auth="public")
    def send(body: Send) -> Any:
        """Send."""
        return Sent(id=body.project_id)

    declared.register_blueprint(bp)
    return {"by hand": by_hand, "declared": declared}


def per_request(requests: int) -> None:
    made = apps()
    body = {"message": "Build a to-do list app", "projectId": "p"}
    times: dict[str, list[float]] = {name: [] for name in made}
    for _ in range(5):  # interleaved rounds, so a busy moment hits both
        for name, app in made.items():
            client = app.test_client()
            started = time.perf_counter()
            for _ in range(requests // 5):
                assert client.post("/m", json=body).status_code == 201
            times[name].append((time.perf_counter() - started) / (requests // 5) * 1e6)
    base = statistics.median(times["by hand"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"POST, {name}: {median:.0f} µs per request ({median / base:.2f}x)")


def rows(files: int) -> list[tuple[Message, Fragment | None, list[Attachment]]]:
    now = datetime.now(UTC)
    page = []
    for n in range(50):
        message = Message(
            id=f"m{n}", conversation_id="c", project_id="p", user_id="u", role="ASSISTANT",
            content="Done. " * 40, type="RESULT", status="COMPLETE", run_id=f"r{n}",
            tool_calls=[{"id": "1", "name": "write_file", "args": {"path": "a"}, "result": {}}],
            image_url=None, error=None, run_metadata={"provider": "demo"}, created_at=now,
            updated_at=now,
        )  # fmt: skip
        fragment = None
        if n % 2:
            fragment = Fragment(
                id=f"f{n}", message_id=f"m{n}", sandbox_id=None, sandbox_url="http://x/",
                title="T", files={f"src/{k}.js": "x" * 2000 for k in range(files)},
                fragment_metadata={"summary": "S"}, framework="REACT", image_url=None,
                design_spec=None, version=n, parent_id=None,
                changes={"added": [], "modified": [], "deleted": []}, created_at=now,
                updated_at=now,
            )  # fmt: skip
        attachment = Attachment(
            id=f"a{n}", message_id=f"m{n}", type="IMAGE", url="https://x.test/a.png", size=3,
            width=None, height=None, import_id=None, source_metadata=None, created_at=now,
            updated_at=now,
        )  # fmt: skip
        page.append((message, fragment, [attachment]))
    return page


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def by_hand(message: Message, fragment: Fragment | None, attached: list[Attachment]) -> Any:
    """The baseline: what orchestrator/serialize.py built, key by key."""
    body = {
        "id": message.id, "conversationId": message.conversation_id,
        "projectId": message.project_id, "userId": message.user_id, "role": message.role,
        "content": message.content, "type": message.type, "status": message.status,
        "runId": message.run_id, "toolCalls": message.tool_calls or [],
        "imageUrl": message.image_url, "error": message.error,
        "metadata": message.run_metadata or {}, "createdAt": iso(message.created_at),
        "updatedAt": iso(message.updated_at),
    }  # fmt: skip
    body["codeFragment"] = None
    if fragment is not None:
        body["codeFragment"] = {
            "id": fragment.id, "messageId": fragment.message_id,
            "sandboxId": fragment.sandbox_id, "sandboxUrl": fragment.sandbox_url,
            "title": fragment.title, "files": fragment.files or {},
            "metadata": fragment.fragment_metadata or {}, "framework": fragment.framework,
            "imageUrl": fragment.image_url, "designSpec": fragment.design_spec,
            "version": fragment.version, "parentId": fragment.parent_id,
            "changes": fragment.changes, "createdAt": iso(fragment.created_at),
            "updatedAt": iso(fragment.updated_at),
        }  # fmt: skip
    body["attachments"] = [
        {
            "id": a.id, "messageId": a.message_id, "type": a.type, "url": a.url,
            "size": a.size, "width": a.width, "height": a.height, "importId": a.import_id,
            "sourceMetadata": a.source_metadata, "createdAt": iso(a.created_at),
            "updatedAt": iso(a.updated_at),
        }
        for a in attached
    ]  # fmt: skip
    return body


def by_contract(message: Message, fragment: Fragment | None, attached: list[Attachment]) -> Any:
    shown = contract.Fragment.model_validate(fragment) if fragment else None
    base = contract.Message.model_validate(message)
    return contract.ListedMessage.of(base, code_fragment=shown, attachments=attached).wire()


def page(files: int) -> None:
    page = rows(files)
    ways: dict[str, Callable[..., Any]] = {"by hand": by_hand, "contract": by_contract}
    # What the view sends: the JSON text (jsonify's json.dumps), the same bytes either way.
    assert json.dumps([by_hand(*r) for r in page]) == json.dumps([by_contract(*r) for r in page])
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(7):
        for name, write in ways.items():
            started = time.perf_counter()
            for _ in range(20):
                json.dumps([write(*row) for row in page])
            times[name].append((time.perf_counter() - started) / 20 * 1e3)
    base = statistics.median(times["by hand"])
    for name, values in times.items():
        median = statistics.median(values)
        said = f"{median:.2f} ms ({median / base:.2f}x)"
        print(f"a page of 50 written as JSON, {files} files per fragment, {name}: {said}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--files", type=int, default=50)
    args = parser.parse_args()
    per_request(args.requests)
    page(args.files)


if __name__ == "__main__":
    main()
