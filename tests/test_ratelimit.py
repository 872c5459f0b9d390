"""Per-user rate limiting of POST /api/messages: a sliding window in Redis that fails open."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from orchestrator import ratelimit
from orchestrator.errors import RateLimited
from orchestrator.settings import Settings
from tests.conftest import Api


def user() -> str:
    return f"user_{uuid.uuid4().hex[:10]}"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_plus_one_th_prompt_in_the_window_is_refused(redis_client: redis.Redis) -> None:
    clock, who = Clock(), user()
    for _ in range(3):
        ratelimit.check(redis_client, who, 3, clock=clock)
        clock.now += 1
    with pytest.raises(RateLimited) as refused:
        ratelimit.check(redis_client, who, 3, clock=clock)
    # The first prompt leaves the window 60 s after it came, 57 s from now.
    assert refused.value.retry_after == 57


def test_the_window_slides_a_slot_frees_when_the_oldest_prompt_leaves_it(
    redis_client: redis.Redis,
) -> None:
    clock, who = Clock(), user()
    for step in (0, 20, 40):
        clock.now = 1_000_000.0 + step
        ratelimit.check(redis_client, who, 3, clock=clock)
    clock.now = 1_000_000.0 + 59.5
    with pytest.raises(RateLimited) as refused:
        ratelimit.check(redis_client, who, 3, clock=clock)
    assert refused.value.retry_after == 1
    clock.now = 1_000_000.0 + 60.001  # the first left; the ones at 20 s and 40 s still count
    ratelimit.check(redis_client, who, 3, clock=clock)
    with pytest.raises(RateLimited):
        ratelimit.check(redis_client, who, 3, clock=clock)


def test_refused_prompts_do_not_extend_the_wait(redis_client: redis.Redis) -> None:
    clock, who = Clock(), user()
    ratelimit.check(redis_client, who, 1, clock=clock)
    for _ in range(20):
        clock.now += 2
        with pytest.raises(RateLimited):
            ratelimit.check(redis_client, who, 1, clock=clock)
    clock.now = 1_000_000.0 + 60.001
    ratelimit.check(redis_client, who, 1, clock=clock)


def test_the_window_resets_in_real_time_and_the_key_expires(redis_client: redis.Redis) -> None:
    who = user()
    for _ in range(2):
        ratelimit.check(redis_client, who, 2, window_seconds=0.5)
    with pytest.raises(RateLimited) as refused:
        ratelimit.check(redis_client, who, 2, window_seconds=0.5)
    assert refused.value.retry_after == 1  # never 0: a client must wait a little
    assert 0 < redis_client.pttl(ratelimit.key(who)) <= 500
    time.sleep(0.6)
    assert not redis_client.exists(ratelimit.key(who))  # nothing lingers for idle users
    ratelimit.check(redis_client, who, 2, window_seconds=0.5)


def test_concurrent_prompts_never_get_past_the_limit(redis_client: redis.Redis) -> None:
    who, results = user(), []
    lock = threading.Lock()

    def attempt() -> None:
        try:
            ratelimit.check(redis.Redis(connection_pool=redis_client.connection_pool), who, 5)
            outcome = "ok"
        except RateLimited:
            outcome = "limited"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("ok") == 5 and results.count("limited") == 25


def test_zero_turns_the_limit_off_without_touching_redis(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    who = user()
    with caplog.at_level(logging.WARNING, logger="orchestrator.ratelimit"):
        for _ in range(50):
            assert ratelimit.check(redis_client, who, 0) is None  # no slot taken
        # A Redis that is down is not even asked: asking would log that it is unavailable.
        dead = redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
        assert ratelimit.check(dead, who, 0) is None
    assert not redis_client.exists(ratelimit.key(who))
    assert caplog.records == []


def test_unreachable_redis_fails_open_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    with caplog.at_level(logging.WARNING, logger="orchestrator.ratelimit"):
        for _ in range(3):
            ratelimit.check(dead, "anyone", 1)
    assert "Redis unavailable" in caplog.text


@pytest.fixture
def limited(settings: Settings, celery_app: Any, worker: Any) -> Any:
    """A separate app limited to 3 prompts a minute; the shared server stays unlimited."""
    from web import create_app

    app = create_app(settings.model_copy(update=dict(rate_limit_per_minute=3)), celery=celery_app)
    return app.test_client()


def post_as(client: Any, token: str) -> Callable[[str], Any]:
    def post(project_id: str) -> Any:
        return client.post(
            "/api/messages",
            json={"message": "Build a to-do list app", "projectId": project_id},
            headers={"Authorization": f"Bearer {token}"},
        )

    return post


def test_the_fourth_prompt_in_a_minute_is_429_with_retry_after(
    limited: Any, make_api: Callable[[], Api]
) -> None:
    alice = make_api()
    projects = [alice.project(f"p{i}")["id"] for i in range(4)]
    post = post_as(limited, alice.token)
    accepted = [post(project_id) for project_id in projects[:3]]
    assert [a.status_code for a in accepted] == [201, 201, 201]
    refused = post(projects[3])
    assert refused.status_code == 429
    assert refused.get_json() == {"error": "Too many requests, slow down"}
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Refused before the use case: nothing stored, no credit spent.
    assert alice.get("/api/messages", params={"projectId": projects[3]}).json() == []
    assert alice.get("/api/me").json()["credits"] == 5 - 3
    for answer in accepted:
        alice.wait_terminal(answer.get_json()["messageId"])


def test_one_users_limit_leaves_other_users_alone(
    limited: Any, make_api: Callable[[], Api]
) -> None:
    alice, bob = make_api(), make_api()
    alice_projects = [alice.project(f"a{i}")["id"] for i in range(4)]
    post = post_as(limited, alice.token)
    sent = [post(project_id) for project_id in alice_projects]
    assert [a.status_code for a in sent] == [201, 201, 201, 429]
    bob_post = post_as(limited, bob.token)
    bob_sent = bob_post(bob.project()["id"])
    assert bob_sent.status_code == 201, bob_sent.get_data(as_text=True)
    for answer in [*sent[:3], bob_sent]:
        owner = bob if answer is bob_sent else alice
        owner.wait_terminal(answer.get_json()["messageId"])


def test_the_limit_counts_per_user_across_app_instances(
    settings: Settings, celery_app: Any, worker: Any, make_api: Callable[[], Api]
) -> None:
    """Two web processes share the window through Redis, so adding one does not double it."""
    from web import create_app

    limited = settings.model_copy(update=dict(rate_limit_per_minute=2))
    first = create_app(limited, celery=celery_app).test_client()
    second = create_app(limited, celery=celery_app).test_client()
    alice = make_api()
    projects = [alice.project(f"p{i}")["id"] for i in range(3)]
    answers = [
        post_as(first, alice.token)(projects[0]),
        post_as(second, alice.token)(projects[1]),
        post_as(first, alice.token)(projects[2]),
    ]
    assert [a.status_code for a in answers] == [201, 201, 429]
    for answer in answers[:2]:
        alice.wait_terminal(answer.get_json()["messageId"])


def test_unreachable_redis_does_not_turn_the_limit_into_a_500(
    settings: Settings, make_api: Callable[[], Api]
) -> None:
    """Fails open: with Redis gone the limiter lets prompts through to the use case."""
    from web import create_app

    dead = settings.model_copy(
        update=dict(redis_url="redis://127.0.0.1:9/0", rate_limit_per_minute=1)
    )
    post = post_as(create_app(dead).test_client(), make_api().token)
    for _ in range(2):
        answer = post("no-such-project")
        # Past the limiter (not 429, not 500): the use case answers, here that nothing exists.
        assert answer.status_code == 404, answer.get_data(as_text=True)
