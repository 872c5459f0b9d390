"""The versions endpoints: shapes, ownership (404 as missing) and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from models import Message, MessageType, Role, Status, transaction
from tests.conftest import Api
from tests.fakes.llm_server import ToolCall
from tests.test_versions_runs import PAGE, STYLE, calls, finish, run


def two_versions(api: Api, llm: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    project = api.project()
    _, one = run(
        api,
        llm,
        project["id"],
        calls(
            ToolCall("write_file", {"path": "index.html", "content": PAGE}),
            ToolCall("write_file", {"path": "style.css", "content": STYLE}),
        ),
        finish("Page"),
    )
    _, two = run(
        api,
        llm,
        project["id"],
        calls(
            ToolCall("edit_file", {"path": "style.css", "old": "black", "new": "blue"}),
            ToolCall("write_file", {"path": "app.js", "content": "go()\n"}),
            ToolCall("run_command", {"command": "rm index.html"}),
        ),
        finish("Blue"),
    )
    return project, one, two


def test_versions_list_oldest_first_without_files(api: Api, llm: Any) -> None:
    project, one, two = two_versions(api, llm)
    listed = api.get(f"/api/projects/{project['id']}/versions")
    assert listed.status_code == 200
    assert listed.json() == [
        {
            "id": one["id"],
            "messageId": one["messageId"],
            "version": 1,
            "parentId": None,
            "title": "Page",
            "changes": {"added": ["index.html", "style.css"], "modified": [], "deleted": []},
            "createdAt": one["createdAt"],
        },
        {
            "id": two["id"],
            "messageId": two["messageId"],
            "version": 2,
            "parentId": one["id"],
            "title": "Blue",
            "changes": {"added": ["app.js"], "modified": ["style.css"], "deleted": ["index.html"]},
            "createdAt": two["createdAt"],
        },
    ]
    assert api.get(f"/api/projects/{api.project()['id']}/versions").json() == []


def test_a_diff_is_unified_per_file_against_the_parent(api: Api, llm: Any) -> None:
    _, one, two = two_versions(api, llm)
    answer = api.get(f"/api/fragments/{two['id']}/diff")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["fragmentId"], body["parentId"]) == (two["id"], one["id"])
    by_path = {item["path"]: item for item in body["files"]}
    assert [item["path"] for item in body["files"]] == ["app.js", "index.html", "style.css"]
    assert by_path["app.js"]["change"] == "added"
    assert by_path["app.js"]["diff"] == "--- /dev/null\n+++ b/app.js\n@@ -0,0 +1 @@\n+go()\n"
    assert by_path["index.html"]["change"] == "deleted"
    assert by_path["index.html"]["diff"].startswith("--- a/index.html\n+++ /dev/null\n")
    assert by_path["style.css"]["change"] == "modified"
    assert "-h1 { color: black; }\n+h1 { color: blue; }\n" in by_path["style.css"]["diff"]
    first = api.get(f"/api/fragments/{one['id']}/diff").json()
    assert first["parentId"] is None
    assert [(f["path"], f["change"]) for f in first["files"]] == [
        ("index.html", "added"),
        ("style.css", "added"),
    ]


def test_restore_makes_a_new_latest_version_without_credit_or_model(
    api: Api, llm: Any, server: str
) -> None:
    project, one, two = two_versions(api, llm)
    credits = api.get("/api/me").json()["credits"]
    requests = len(llm.requests)
    answer = api.post(f"/api/fragments/{one['id']}/restore", json={})
    assert answer.status_code == 201, answer.text
    message, fragment = answer.json()["message"], answer.json()["fragment"]
    assert (message["role"], message["status"], message["type"]) == (
        "ASSISTANT",
        "COMPLETE",
        "RESULT",
    )
    assert "version 1" in message["content"]
    assert message["conversationId"] == two_conversation(api, two)
    assert fragment["files"] == one["files"]
    assert (fragment["version"], fragment["parentId"]) == (3, two["id"])
    assert fragment["metadata"]["restoredFrom"] == one["id"]
    assert fragment["messageId"] == message["id"]
    assert fragment["changes"] == {
        "added": ["index.html"],
        "modified": ["style.css"],
        "deleted": ["app.js"],
    }
    assert api.get("/api/me").json()["credits"] == credits
    assert len(llm.requests) == requests
    listed = api.get("/api/messages", params={"projectId": project["id"]}).json()
    assert listed[-1]["id"] == message["id"] and listed[-1]["codeFragment"]["id"] == fragment["id"]
    events = api.get(f"/api/messages/{message['id']}/events")
    assert events.status_code == 200
    assert [line for line in events.text.splitlines() if line.startswith("event:")] == [
        "event: done"
    ]
    # The restored version is the next run's base.
    _, four = run(
        api,
        llm,
        project["id"],
        calls(ToolCall("write_file", {"path": "x.txt", "content": "x"})),
        finish(),
    )
    assert four["parentId"] == fragment["id"] and set(four["files"]) == {
        "index.html",
        "style.css",
        "x.txt",
    }
    page = httpx.get(fragment["sandboxUrl"])
    assert page.status_code == 200 and page.text == PAGE


def two_conversation(api: Api, fragment: dict[str, Any]) -> str:
    return str(api.message(fragment["messageId"])["conversationId"])


def test_restore_into_a_conversation_and_its_errors(api: Api, llm: Any, db: Any) -> None:
    project, one, _two = two_versions(api, llm)
    other = api.post("/api/conversations", json={"projectId": project["id"], "title": "B"}).json()
    answer = api.post(f"/api/fragments/{one['id']}/restore", json={"conversationId": other["id"]})
    assert answer.status_code == 201
    assert answer.json()["message"]["conversationId"] == other["id"]
    elsewhere = api.post("/api/conversations", json={"projectId": api.project()["id"]}).json()
    wrong = api.post(
        f"/api/fragments/{one['id']}/restore", json={"conversationId": elsewhere["id"]}
    )
    assert wrong.status_code == 400
    missing = api.post(f"/api/fragments/{one['id']}/restore", json={"conversationId": "nope"})
    assert missing.status_code == 404 and missing.json() == {"error": "Conversation not found"}
    bad = api.post(f"/api/fragments/{one['id']}/restore", json={"unknown": 1})
    assert bad.status_code == 400
    # A run in progress in that conversation: 409 with its message id.
    with transaction(db) as session:
        running = Message(
            conversation_id=other["id"],
            project_id=project["id"],
            user_id=api.user_id,
            role=Role.ASSISTANT,
            type=MessageType.STREAMING,
            status=Status.PENDING,
            run_id="r-" + other["id"][:30],
        )
        session.add(running)
        session.flush()
        running_id = running.id
    busy = api.post(f"/api/fragments/{one['id']}/restore", json={"conversationId": other["id"]})
    assert busy.status_code == 409
    assert busy.json() == {"error": "A message is already being processed", "messageId": running_id}
    with transaction(db) as session:
        session.get(Message, running_id).status = Status.CANCELLED


def test_a_local_live_preview_is_the_served_one(api: Api, llm: Any, settings: Any) -> None:
    _, one, _two = two_versions(api, llm)
    answer = api.post(f"/api/fragments/{one['id']}/sandbox")
    assert answer.status_code == 200
    assert answer.json() == {
        "sandboxUrl": f"{settings.public_url}/preview/{one['id']}/",
        "sandboxId": None,
        "expiresAt": None,
    }
    assert httpx.get(answer.json()["sandboxUrl"]).text == PAGE


def test_versions_are_the_owners_alone_and_others_look_missing(
    api: Api, llm: Any, make_api: Callable[[], Api]
) -> None:
    project, one, _two = two_versions(api, llm)
    mallory = make_api()
    for method, path in (
        ("GET", f"/api/projects/{project['id']}/versions"),
        ("GET", f"/api/fragments/{one['id']}/diff"),
        ("POST", f"/api/fragments/{one['id']}/restore"),
        ("POST", f"/api/fragments/{one['id']}/sandbox"),
    ):
        theirs = mallory.request(method, path, json={} if method == "POST" else None)
        missing = mallory.request(
            method,
            path.replace(one["id"], "missing").replace(project["id"], "missing"),
            json={} if method == "POST" else None,
        )
        assert theirs.status_code == missing.status_code == 404, path
        assert theirs.json() == missing.json(), path
        assert httpx.request(method, str(api.http.base_url.join(path))).status_code == 401
    assert api.get(f"/api/projects/{project['id']}/versions").json()[-1]["version"] == 2
