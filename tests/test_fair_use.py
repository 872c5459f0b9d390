"""Fair use: MAX_RUNS_PER_USER runs in progress across conversations, and a rate limit that
counts only the prompts that were accepted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from models import transaction
from orchestrator import accounts
from orchestrator.settings import Settings
from tests.conftest import Api
from tests.fakes.llm_server import Reply
from tests.test_ratelimit import post_as

SLOW = Reply("Working on it. " * 100, chunk_size=2, delay=0.05)  # ~40 s unless cancelled


@pytest.fixture
def capped(settings: Settings, celery_app: Any, worker: Any) -> Any:
    from web import create_app

    return create_app(settings.model_copy(update=dict(max_runs_per_user=2)), celery=celery_app)


def test_a_third_run_in_progress_is_429_with_a_sentence_and_retry_after(
    capped: Any, make_api: Callable[[], Api], llm: Any
) -> None:
    llm.default = SLOW
    alice, bob = make_api(), make_api()
    projects = [alice.project(f"p{i}")["id"] for i in range(3)]
    post = post_as(capped.test_client(), alice.token)
    other = None
    first = [post(project_id) for project_id in projects[:2]]
    assert [a.status_code for a in first] == [201, 201]
    try:
        refused = post(projects[2])
        assert refused.status_code == 429, refused.get_data(as_text=True)
        error = refused.get_json()["error"]
        assert "2 runs in progress" in error and "wait for one to finish" in error
        assert int(refused.headers["Retry-After"]) >= 1
        # Nothing stored, no credit taken for the refused one.
        assert alice.get("/api/messages", params={"projectId": projects[2]}).json() == []
        assert alice.get("/api/me").json()["credits"] == 5 - 2
        # Another user is not held by alice's runs.
        other = post_as(capped.test_client(), bob.token)(bob.project()["id"])
        assert other.status_code == 201
        # One run over: room for the next.
        stopped = first[0].get_json()["messageId"]
        assert alice.delete(f"/api/messages/{stopped}").status_code == 200
        assert alice.wait_terminal(stopped)["status"] == "CANCELLED"
        again = post(projects[2])
        assert again.status_code == 201, again.get_data(as_text=True)
        first.append(again)
    finally:
        for answer in first[1:]:
            alice.delete(f"/api/messages/{answer.get_json()['messageId']}")
        if other is not None and other.status_code == 201:
            bob.delete(f"/api/messages/{other.get_json()['messageId']}")


def test_concurrent_prompts_never_get_past_the_cap(
    settings: Settings, celery_app: Any, worker: Any, make_api: Callable[[], Api], llm: Any
) -> None:
    from web import create_app

    llm.default = SLOW
    app = create_app(settings.model_copy(update=dict(max_runs_per_user=1)), celery=celery_app)
    alice = make_api()
    projects = [alice.project(f"c{i}")["id"] for i in range(6)]
    barrier = threading.Barrier(len(projects))
    answers: list[Any] = []
    lock = threading.Lock()

    def send(project_id: str) -> None:
        post = post_as(app.test_client(), alice.token)
        barrier.wait()
        answer = post(project_id)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send, args=(p,)) for p in projects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(a.status_code for a in answers)
    accepted = [a for a in answers if a.status_code == 201]
    # One credit taken, for the one accepted prompt. Read before the DELETE: a run cancelled
    # while still PENDING gets its credit back, so afterwards the balance depends on the race.
    credits = alice.get("/api/me").json()["credits"]
    for answer in accepted:
        alice.delete(f"/api/messages/{answer.get_json()['messageId']}")
    assert codes == [201] + [429] * 5, [a.get_data(as_text=True) for a in answers]
    assert credits == 4


def test_refused_prompts_do_not_use_up_the_rate_limit(
    settings: Settings, celery_app: Any, worker: Any, make_api: Callable[[], Api], db: Any
) -> None:
    from web import create_app

    app = create_app(settings.model_copy(update=dict(rate_limit_per_minute=2)), celery=celery_app)
    alice = make_api()
    project = alice.project()["id"]
    with transaction(db) as session:
        accounts.set_credits(session, alice.user_id, 0, 5)
    post = post_as(app.test_client(), alice.token)
    assert [post(project).status_code for _ in range(4)] == [402] * 4  # no credit: not accepted
    with transaction(db) as session:
        accounts.set_credits(session, alice.user_id, 5, 5)
    second = alice.project("second")["id"]
    accepted = [post(project), post(second)]
    assert [a.status_code for a in accepted] == [201, 201]
    assert post(alice.project("third")["id"]).status_code == 429  # the limit still holds
    for answer in accepted:
        alice.wait_terminal(answer.get_json()["messageId"])
