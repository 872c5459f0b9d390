"""Races the database must win: one run per conversation, credits never overspent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from models import transaction
from orchestrator import accounts
from tests.conftest import Api
from tests.fakes.llm_server import Reply


def test_fifty_concurrent_posts_to_one_conversation_give_exactly_one_201(
    api: Api, llm: Any, db: Any
) -> None:
    # Slow enough that the winner is still running when the last request arrives.
    llm.script(Reply("still working " * 10, chunk_size=4, delay=0.1))
    project = api.project()
    api.get("/api/me")
    with transaction(db) as session:
        accounts.set_credits(session, api.user_id, 100, 5)
    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(lambda i: api.send(project["id"], f"Prompt number {i}"), range(50)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 1, codes
    assert set(codes) == {201, 409}
    winner = next(a.json() for a in answers if a.status_code == 201)
    assert all(
        a.json()["messageId"] == winner["messageId"] for a in answers if a.status_code == 409
    )
    api.wait_terminal(winner["messageId"], timeout=30)
    assert api.get("/api/me").json()["credits"] == 99
    with transaction(db) as session:
        assert accounts.ledger_balance(session, api.user_id) == 99


def test_thirty_concurrent_posts_with_five_credits_give_exactly_five_201s(
    api: Api, llm: Any, db: Any
) -> None:
    llm.default = Reply("ok")
    project = api.project()
    conversations = [
        api.post("/api/conversations", json={"projectId": project["id"]}).json()["id"]
        for _ in range(30)
    ]
    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(
            pool.map(
                lambda cid: api.post(
                    "/api/messages", json={"conversationId": cid, "message": "Build it"}
                ),
                conversations,
            )
        )
    codes = [a.status_code for a in answers]
    assert codes.count(201) == 5, codes
    assert codes.count(402) == 25
    for answer in answers:
        if answer.status_code == 201:
            api.wait_terminal(answer.json()["messageId"])
    assert api.get("/api/me").json()["credits"] == 0
    with transaction(db) as session:
        assert accounts.ledger_balance(session, api.user_id) == 0


def test_a_retry_with_the_same_idempotency_key_replays_and_creates_nothing(api: Api) -> None:
    project = api.project()
    body = {"message": "Build a to-do list app", "projectId": project["id"]}
    key = {"Idempotency-Key": "retry-me-1"}
    first = api.post("/api/messages", json=body, headers=key)
    assert first.status_code == 201
    api.wait_terminal(first.json()["messageId"])
    again = api.post("/api/messages", json=body, headers=key)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert len(api.get("/api/messages", params={"projectId": project["id"]}).json()) == 2
    assert api.get("/api/me").json()["credits"] == 4


def test_concurrent_retries_with_one_key_create_one_turn(api: Api) -> None:
    project = api.project()
    body = {"message": "Build a to-do list app", "projectId": project["id"]}
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(
            pool.map(
                lambda _: api.post("/api/messages", json=body, headers={"Idempotency-Key": "k2"}),
                range(10),
            )
        )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["messageId"] for a in answers}) == 1
    api.wait_terminal(answers[0].json()["messageId"])
    assert len(api.get("/api/messages", params={"projectId": project["id"]}).json()) == 2
