"""Every failure answer of DESIGN section 4, with its status code and body."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

from models import transaction
from orchestrator import accounts
from orchestrator.settings import Settings
from tests.conftest import SECRET, Api
from tests.fakes.llm_server import Reply


def test_missing_or_bad_token_is_401(api: Api) -> None:
    bare = httpx.Client(base_url=str(api.http.base_url))
    assert bare.get("/api/me").status_code == 401
    assert bare.get("/api/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    expired = jwt.encode({"sub": "x", "exp": int(time.time()) - 60}, SECRET, "HS256")
    answer = bare.get("/api/me", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    assert answer.json() == {"error": "Invalid or expired token"}
    forged = jwt.encode({"sub": "x"}, "another-secret-of-sufficient-length!!", "HS256")
    assert bare.get("/api/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    no_sub = jwt.encode({"exp": int(time.time()) + 60}, SECRET, "HS256")
    assert bare.get("/api/me", headers={"Authorization": f"Bearer {no_sub}"}).status_code == 401


def test_first_sight_creates_the_user_with_default_credits(api: Api) -> None:
    assert api.get("/api/me").json() == {"userId": api.user_id, "plan": "FREE", "credits": 5}


def test_invalid_bodies_are_400_with_a_sentence(api: Api) -> None:
    project = api.project()
    cases: list[Any] = [
        {"projectId": project["id"]},
        {"message": "hi", "projectId": project["id"]},
        {"message": "   ab   ", "projectId": project["id"]},
        {"message": "x" * 1001, "projectId": project["id"]},
        {"message": "Build a thing"},
        {"message": 123, "projectId": project["id"]},
        {"message": "Build a thing", "projectId": project["id"], "surprise": True},
        {"message": "Build a thing", "projectId": project["id"], "attachments": [{"url": "x"}]},
        {
            "message": "Build a thing",
            "projectId": project["id"],
            "attachments": [{"url": "javascript:alert(1)", "size": 1}],
        },
        ["not", "an", "object"],
    ]
    for body in cases:
        answer = api.post("/api/messages", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert isinstance(answer.json()["error"], str) and answer.json()["error"]
    raw = api.post(
        "/api/messages", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert raw.status_code == 400
    assert raw.json() == {"error": "Request body must be valid JSON"}


def test_listing_without_an_id_and_cancel_without_message_id_are_400(api: Api) -> None:
    assert api.get("/api/messages").status_code == 400
    assert api.request("DELETE", "/api/messages", json={}).status_code == 400
    assert api.request("DELETE", "/api/messages").status_code == 400


def test_unknown_project_and_conversation_are_404_with_their_names(api: Api) -> None:
    answer = api.post("/api/messages", json={"message": "Build it", "projectId": "nope"})
    assert (answer.status_code, answer.json()) == (404, {"error": "Project not found"})
    answer = api.post("/api/messages", json={"message": "Build it", "conversationId": "nope"})
    assert (answer.status_code, answer.json()) == (404, {"error": "Conversation not found"})


def test_project_and_conversation_that_disagree_are_400(api: Api) -> None:
    first, second = api.project("one"), api.project("two")
    conversation = api.post("/api/conversations", json={"projectId": first["id"]}).json()
    answer = api.post(
        "/api/messages",
        json={
            "message": "Build it",
            "projectId": second["id"],
            "conversationId": conversation["id"],
        },
    )
    assert answer.status_code == 400


def test_out_of_credits_is_402_and_stores_nothing(api: Api, db: Any) -> None:
    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        accounts.set_credits(session, api.user_id, 0, 5)
    answer = api.send(project["id"])
    assert (answer.status_code, answer.json()) == (402, {"error": "You have run out of credits"})
    assert api.get("/api/messages", params={"projectId": project["id"]}).json() == []


def test_image_url_needs_the_pro_plan_but_attachments_do_not(api: Api, db: Any) -> None:
    project = api.project()
    answer = api.send(project["id"], imageUrl="https://example.com/shot.png")
    assert answer.status_code == 403
    assert answer.json() == {"error": "Image uploads require the Pro plan"}
    attached = api.send(
        project["id"], attachments=[{"url": "https://example.com/a.png", "size": 10}]
    )
    assert attached.status_code == 201, attached.text
    api.wait_terminal(attached.json()["messageId"])


def test_second_prompt_while_running_is_409_with_the_running_message(api: Api, llm: Any) -> None:
    llm.script(Reply("slow " * 30, chunk_size=5, delay=0.1))
    project = api.project()
    first = api.send(project["id"]).json()
    second = api.send(project["id"], "Another request")
    assert second.status_code == 409
    assert second.json() == {
        "error": "A message is already being processed",
        "messageId": first["messageId"],
    }
    api.request("DELETE", f"/api/messages/{first['messageId']}")
    api.wait_terminal(first["messageId"])


def test_body_over_one_mib_is_413(api: Api) -> None:
    project = api.project()
    big = {"message": "x" * (1024 * 1024 + 10), "projectId": project["id"]}
    answer = api.post("/api/messages", json=big)
    assert answer.status_code == 413
    assert "error" in answer.json()


def test_idempotency_key_reused_with_another_body_is_422(api: Api) -> None:
    project = api.project()
    key = {"Idempotency-Key": "k-422"}
    first = api.post(
        "/api/messages", json={"message": "Build one", "projectId": project["id"]}, headers=key
    )
    assert first.status_code == 201
    again = api.post(
        "/api/messages", json={"message": "Build two", "projectId": project["id"]}, headers=key
    )
    assert again.status_code == 422
    assert again.json() == {"error": "Idempotency-Key reused with a different body"}
    api.wait_terminal(first.json()["messageId"])


def test_unreachable_queue_is_503_and_leaves_nothing_behind(
    settings: Settings, api: Api, db: Any
) -> None:
    from web import create_app

    project = api.project()
    api.get("/api/me")
    dead = settings.model_copy(update=dict(redis_url="redis://127.0.0.1:9/0"))
    client = create_app(dead).test_client()
    started = time.monotonic()
    answer = client.post(
        "/api/messages",
        json={"message": "Build it", "projectId": project["id"]},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert "error" in answer.get_json()
    assert elapsed < 15
    assert api.get("/api/messages", params={"projectId": project["id"]}).json() == []
    assert api.get("/api/me").json()["credits"] == 5
    with transaction(db) as session:
        assert accounts.ledger_balance(session, api.user_id) == 5
