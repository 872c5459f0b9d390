"""`POST /api/chat` and `GET /api/chat/<id>/stream` (DESIGN section 19): the rules of
`POST /api/messages` hold for a prompt sent the AI SDK's way, and resume answers 204 or 200."""

from __future__ import annotations

import json
from typing import Any

import httpx

from models import transaction
from orchestrator import accounts
from tests.conftest import Api
from tests.fakes.llm_server import Reply


def user_says(text: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}, *parts]}


def chat_body(chat_id: str, text: str = "Build a to-do list app", **extra: Any) -> dict[str, Any]:
    return {"id": chat_id, "messages": [user_says(text)], "trigger": "submit-message", **extra}


def first_chunk(
    api: Api, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """The status, and the stream's first chunk (200) or the JSON error body."""
    timeout = httpx.Timeout(15, read=10)
    with api.http.stream("POST", "/api/chat", json=body, headers=headers, timeout=timeout) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, r.json()
        assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
        for line in r.iter_lines():
            if line.startswith("data: "):
                return 200, json.loads(line[6:])
    raise AssertionError("the stream ended without a chunk")


def test_a_prompt_by_project_id_and_by_conversation_id_starts_a_run(api: Api) -> None:
    project = api.project()
    status, start = first_chunk(api, chat_body(project["id"]))
    assert (status, start["type"]) == (200, "start")
    api.wait_terminal(start["messageId"])
    conversation = api.post("/api/conversations", json={"projectId": project["id"]}).json()
    status, again = first_chunk(api, chat_body(conversation["id"], "Make it blue"))
    assert status == 200
    assert api.wait_terminal(again["messageId"])["conversationId"] == conversation["id"]


def test_the_whole_history_may_come_and_only_the_last_message_is_the_prompt(api: Api) -> None:
    project = api.project()
    answer = {"id": "a0", "role": "assistant", "parts": [{"type": "step-start"}]}
    history = [user_says("An earlier prompt"), answer, user_says("The new prompt")]
    status, start = first_chunk(api, {"id": project["id"], "messages": history})
    assert status == 200
    api.wait_terminal(start["messageId"])
    listed = api.get("/api/messages", params={"projectId": project["id"]}).json()
    assert [m["content"] for m in listed if m["role"] == "USER"] == ["The new prompt"]


def test_out_of_credits_is_402(api: Api, db: Any) -> None:
    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        accounts.set_credits(session, api.user_id, 0, 5)
    assert first_chunk(api, chat_body(project["id"])) == (
        402,
        {"error": "You have run out of credits"},
    )
    assert api.get("/api/messages", params={"projectId": project["id"]}).json() == []


def test_a_prompt_while_one_runs_is_409_with_the_running_message(api: Api, llm: Any) -> None:
    llm.script(Reply("slow " * 30, chunk_size=5, delay=0.1))
    project = api.project()
    _status, start = first_chunk(api, chat_body(project["id"]))
    assert first_chunk(api, chat_body(project["id"], "Another request")) == (
        409,
        {"error": "A message is already being processed", "messageId": start["messageId"]},
    )
    resumed = api.get(f"/api/chat/{project['id']}/stream", timeout=20)  # read to the end
    assert resumed.status_code == 200
    assert resumed.text.endswith("data: [DONE]\n\n")
    assert f'"messageId":"{start["messageId"]}"' in resumed.text
    api.wait_terminal(start["messageId"])
    assert api.get(f"/api/chat/{project['id']}/stream").status_code == 204


def test_a_retry_with_the_same_idempotency_key_streams_the_same_run(api: Api) -> None:
    project = api.project()
    key = {"Idempotency-Key": "chat-1"}
    _status, first = first_chunk(api, chat_body(project["id"]), key)
    status, again = first_chunk(api, chat_body(project["id"]), key)
    assert (status, again["messageId"]) == (200, first["messageId"])
    other = first_chunk(api, chat_body(project["id"], "Something else"), key)
    assert other == (422, {"error": "Idempotency-Key reused with a different body"})
    api.wait_terminal(first["messageId"])
    assert len(api.get("/api/messages", params={"projectId": project["id"]}).json()) == 2


def test_a_file_part_with_an_image_url_becomes_an_attachment(api: Api) -> None:
    project = api.project()
    image = {"type": "file", "mediaType": "image/png", "url": "https://example.com/a.png"}
    body = {"id": project["id"], "messages": [user_says("Like this picture", image)]}
    _status, start = first_chunk(api, body)
    api.wait_terminal(start["messageId"])
    listed = api.get("/api/messages", params={"projectId": project["id"]}).json()
    user_message = listed[0]
    assert user_message["content"] == "Like this picture"
    assert [a["url"] for a in user_message["attachments"]] == ["https://example.com/a.png"]


def test_bad_bodies_are_400_with_a_sentence(api: Api) -> None:
    project_id = api.project()["id"]
    assistant = {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "Hi there"}]}
    data_url = {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"}
    pdf = {"type": "file", "mediaType": "application/pdf", "url": "https://example.com/a.pdf"}
    cases = {
        "no messages": {"id": project_id, "messages": []},
        "assistant last": {"id": project_id, "messages": [user_says("Build it"), assistant]},
        "short prompt": chat_body(project_id, "  a "),
        "regenerate": chat_body(project_id, trigger="regenerate-message"),
        "data url": {"id": project_id, "messages": [user_says("Build it", data_url)]},
        "not an image": {"id": project_id, "messages": [user_says("Build it", pdf)]},
        "unknown key": chat_body(project_id, extra=1),
        "no id": {"messages": [user_says("Build it")]},
    }
    for name, body in cases.items():
        status, answer = first_chunk(api, body)
        assert status == 400, (name, answer)
        assert isinstance(answer["error"], str) and answer["error"], (name, answer)
    assert api.get("/api/messages", params={"projectId": project_id}).json() == []


def test_no_token_is_401_and_another_users_chat_is_404(api: Api, make_api: Any) -> None:
    project = api.project()
    conversation = api.post("/api/conversations", json={"projectId": project["id"]}).json()
    bare = httpx.post(f"{api.base_url}/api/chat", json=chat_body(project["id"]))
    assert bare.status_code == 401
    assert httpx.get(f"{api.base_url}/api/chat/{project['id']}/stream").status_code == 401
    other = make_api()
    for chat_id in (project["id"], conversation["id"], "no-such-id"):
        status, answer = first_chunk(other, chat_body(chat_id))
        assert status == 404, (chat_id, answer)
        assert other.get(f"/api/chat/{chat_id}/stream").status_code == 404
    assert api.get("/api/messages", params={"projectId": project["id"]}).json() == []
