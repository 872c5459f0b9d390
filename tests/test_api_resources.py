"""Projects, conversations, messages, fragments and attachments: shapes, order and ownership."""

from __future__ import annotations

import re
from typing import Any

from models import transaction
from orchestrator.runs import lifecycle
from orchestrator.runs.lifecycle import FragmentValues
from tests.conftest import Api

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_projects_are_created_listed_and_fetched(api: Api) -> None:
    created = api.project("Shop", framework="VUE")
    assert created["name"] == "Shop" and created["framework"] == "VUE"
    assert created["userId"] == api.user_id
    assert ISO.match(created["createdAt"]) and ISO.match(created["updatedAt"])
    assert api.project("Plain")["framework"] == "NEXTJS"
    listed = api.get("/api/projects").json()
    assert {p["name"] for p in listed} == {"Shop", "Plain"}
    assert api.get(f"/api/projects/{created['id']}").json() == created
    bad = api.post("/api/projects", json={"name": "x", "framework": "COBOL"})
    assert bad.status_code == 400


def test_conversations_list_newest_activity_first(api: Api) -> None:
    project = api.project()
    older = api.post("/api/conversations", json={"projectId": project["id"], "title": "A"}).json()
    newer = api.post("/api/conversations", json={"projectId": project["id"]}).json()
    assert newer["title"] == "New Conversation"
    listed = api.get("/api/conversations", params={"projectId": project["id"]}).json()
    assert [c["id"] for c in listed] == [newer["id"], older["id"]]
    sent = api.post("/api/messages", json={"conversationId": older["id"], "message": "Build it"})
    assert sent.status_code == 201
    listed = api.get("/api/conversations", params={"projectId": project["id"]}).json()
    assert [c["id"] for c in listed] == [older["id"], newer["id"]]
    api.wait_terminal(sent.json()["messageId"])


def test_post_answers_the_user_message_with_run_and_assistant_ids(api: Api) -> None:
    project = api.project()
    answer = api.send(project["id"], "  Build a to-do list app  ")
    assert answer.status_code == 201
    body = answer.json()
    assert body["success"] is True
    assert body["content"] == "Build a to-do list app"
    assert (body["role"], body["type"], body["status"]) == ("USER", "RESULT", "COMPLETE")
    for field in (
        "id",
        "conversationId",
        "projectId",
        "userId",
        "imageUrl",
        "createdAt",
        "updatedAt",
        "toolCalls",
        "error",
    ):
        assert field in body
    assistant = api.message(body["messageId"])
    assert assistant["runId"] == body["runId"]
    assert assistant["role"] == "ASSISTANT"
    api.wait_terminal(body["messageId"])


def test_messages_list_oldest_first_with_fragment_and_attachments(api: Api) -> None:
    project = api.project()
    ids = []
    for text in ("First prompt", "Second prompt"):
        body = api.send(
            project["id"], text, attachments=[{"url": "https://x.test/a.png", "size": 3}]
        ).json()
        api.wait_terminal(body["messageId"])
        ids += [body["id"], body["messageId"]]
    listed = api.get("/api/messages", params={"projectId": project["id"]}).json()
    assert [m["id"] for m in listed] == ids
    assert [m["role"] for m in listed] == ["USER", "ASSISTANT"] * 2
    assert listed[0]["attachments"][0]["url"] == "https://x.test/a.png"
    assert listed[0]["attachments"][0]["type"] == "IMAGE"
    assert all("codeFragment" in m for m in listed)
    by_conversation = api.get(
        "/api/messages", params={"conversationId": listed[0]["conversationId"]}
    ).json()
    assert [m["id"] for m in by_conversation] == ids


def _complete_with_fragment(api: Api, db: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    project = api.project()
    body = api.send(project["id"]).json()
    api.wait_terminal(body["messageId"])
    with transaction(db) as session:
        lifecycle.upsert_fragment(
            session,
            body["messageId"],
            FragmentValues(
                title="T",
                files={"index.html": "<h1>hi</h1>"},
                framework="NEXTJS",
                sandbox_id=None,
                sandbox_url="http://x/preview/{fragment_id}/",
                metadata={},
            ),
        )
    return project, body


def test_fragments_are_public_by_id_and_full_for_the_owner(api: Api, db: Any) -> None:
    project, body = _complete_with_fragment(api, db)
    fragment = api.get(f"/api/messages/{body['messageId']}/fragment").json()
    assert fragment["files"] == {"index.html": "<h1>hi</h1>"}
    assert fragment["sandboxUrl"] == f"http://x/preview/{fragment['id']}/"
    import httpx

    anonymous = httpx.get(str(api.http.base_url.join(f"/api/fragments/{fragment['id']}")))
    assert anonymous.status_code == 200 and anonymous.json()["id"] == fragment["id"]
    full = api.get(f"/api/fragments/{fragment['id']}/full").json()
    assert full["project"]["id"] == project["id"]
    assert full["message"]["id"] == body["messageId"]
    assert api.get("/api/fragments/does-not-exist").status_code == 404
    again = api.send(project["id"]).json()
    api.wait_terminal(again["messageId"])
    assert api.get(f"/api/messages/{again['messageId']}/fragment").json() is None


def test_attachments_can_be_listed_and_added(api: Api) -> None:
    project = api.project()
    body = api.send(project["id"]).json()
    added = api.post(
        f"/api/messages/{body['id']}/attachments",
        json={
            "type": "GITHUB_REPO",
            "url": "https://github.com/a/b",
            "size": 0,
            "sourceMetadata": {"branch": "main"},
        },
    )
    assert added.status_code == 201
    listed = api.get(f"/api/messages/{body['id']}/attachments").json()
    assert listed[0]["type"] == "GITHUB_REPO"
    assert listed[0]["sourceMetadata"] == {"branch": "main"}
    api.wait_terminal(body["messageId"])


def test_another_users_things_answer_exactly_like_missing_ones(
    make_api: Any, worker: Any, db: Any
) -> None:
    alice, bob = make_api(), make_api()
    project, body = _complete_with_fragment(alice, db)
    fragment = alice.get(f"/api/messages/{body['messageId']}/fragment").json()
    conversation_id = body["conversationId"]
    paths = [
        f"/api/projects/{project['id']}",
        f"/api/messages/{body['id']}",
        f"/api/messages/{body['messageId']}",
        f"/api/messages/{body['messageId']}/fragment",
        f"/api/messages/{body['messageId']}/attachments",
        f"/api/fragments/{fragment['id']}/full",
    ]
    listings = [
        ("/api/messages", {"projectId": project["id"]}),
        ("/api/conversations", {"projectId": project["id"]}),
        ("/api/projects", {}),
    ]
    owners_view = [alice.get(path).json() for path in paths]
    owners_view += [alice.get(path, params=params).json() for path, params in listings]
    for path in paths:
        assert bob.get(path).status_code == 404, path
    assert bob.get("/api/messages", params={"projectId": project["id"]}).status_code == 404
    assert bob.get("/api/messages", params={"conversationId": conversation_id}).status_code == 404
    assert bob.get("/api/conversations", params={"projectId": project["id"]}).status_code == 404
    assert bob.send(project["id"]).status_code == 404
    sent = bob.post("/api/messages", json={"conversationId": conversation_id, "message": "hey!"})
    assert sent.json() == {"error": "Conversation not found"}
    assert bob.post("/api/conversations", json={"projectId": project["id"]}).status_code == 404
    assert bob.request("DELETE", f"/api/messages/{body['messageId']}").status_code == 404
    assert (
        bob.post(
            f"/api/messages/{body['id']}/attachments", json={"url": "https://x.y/z", "size": 1}
        ).status_code
        == 404
    )
    assert bob.get("/api/projects").json() == []
    # The owner still sees everything, unchanged by the other user's refused writes.
    after = [alice.get(path) for path in paths]
    assert [answer.status_code for answer in after] == [200] * len(paths)
    after_listed = [alice.get(path, params=params).json() for path, params in listings]
    assert [answer.json() for answer in after] + after_listed == owners_view
