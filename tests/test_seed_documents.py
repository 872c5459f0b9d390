"""The curl bodies of the seed documents work unchanged against our API."""

from __future__ import annotations

from tests.conftest import Api


def test_forgeai_curl_body_with_project_id(api: Api) -> None:
    project = api.project()
    answer = api.post(
        "/api/messages",
        json={"message": "Add a dark mode toggle to the header", "projectId": project["id"]},
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body["content"] == "Add a dark mode toggle to the header"
    assert body["role"] == "USER" and body["type"] == "RESULT" and body["imageUrl"] is None
    listed = api.get("/api/messages", params={"projectId": project["id"]}).json()
    assert listed[0]["codeFragment"] is None
    api.wait_terminal(body["messageId"])


def test_polaris_curl_bodies_send_and_cancel(api: Api) -> None:
    project = api.project()
    conversation = api.post(
        "/api/conversations", json={"projectId": project["id"], "title": "New Conversation"}
    ).json()
    answer = api.post(
        "/api/messages",
        json={
            "conversationId": conversation["id"],
            "message": "Create a React component for a todo list",
        },
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body["success"] is True and body["runId"] and body["messageId"]
    final = api.wait_terminal(body["messageId"])
    assert final["status"] == "COMPLETE"
    cancelled = api.request("DELETE", "/api/messages", json={"messageId": body["messageId"]})
    assert cancelled.status_code == 409
    assert cancelled.json() == {"error": "Message is not being processed"}


def test_zapdev_create_with_attachments_uses_value(api: Api) -> None:
    project = api.project()
    answer = api.post(
        "/api/messages",
        json={
            "value": "Update the UI based on this design",
            "projectId": project["id"],
            "attachments": [
                {"url": "https://cdn.test/d.png", "size": 123456, "width": 1920, "height": 1080}
            ],
        },
    )
    assert answer.status_code == 201, answer.text
    attachments = api.get(f"/api/messages/{answer.json()['id']}/attachments").json()
    assert attachments[0]["width"] == 1920 and attachments[0]["type"] == "IMAGE"
    api.wait_terminal(answer.json()["messageId"])
