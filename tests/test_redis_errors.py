"""Redis unreachable, or its connection pool exhausted: endpoints that need it answer 503 with a
sentence, as they do when the database is down (issue 8, item 11)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from orchestrator.settings import Settings
from tests.conftest import Api, closed_port
from tests.fakes.jwks_server import CountingJwks, public_jwk
from tests.test_auth import claims, rsa_key

SENTENCE = "The event store is unavailable, please try again shortly"


@pytest.fixture
def jwks() -> Iterator[tuple[CountingJwks, rsa.RSAPrivateKey]]:
    key = rsa_key()
    server = CountingJwks([public_jwk(key, "key-1")])
    yield server, key
    server.close()


def finished_message(api: Api) -> str:
    sent = api.send(api.project()["id"]).json()
    api.wait_terminal(sent["messageId"])
    return str(sent["messageId"])


def test_events_answer_503_when_redis_is_unreachable(
    api: Api, settings: Settings, celery_app: Any
) -> None:
    from web import create_app

    message_id = finished_message(api)
    # The same database, and a Redis port where nothing listens (a stopped server).
    with closed_port() as port:
        gone = settings.model_copy(update=dict(redis_url=f"redis://127.0.0.1:{port}/0"))
        client = create_app(gone, celery=celery_app).test_client()
        headers = {"Authorization": f"Bearer {api.token}"}
        answer = client.get(f"/api/messages/{message_id}/events", headers=headers)
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.get_json() == {"error": SENTENCE}


def test_a_connection_pool_time_out_answers_503(
    api: Api,
    settings: Settings,
    celery_app: Any,
    jwks: tuple[CountingJwks, rsa.RSAPrivateKey],
) -> None:
    from web import create_app

    server, key = jwks
    message_id = finished_message(api)
    # With JWKS alone, the events token's key lives in Redis: the token endpoint needs Redis.
    app = create_app(
        settings.model_copy(update=dict(auth_secret=None, auth_jwks_url=server.url)),
        celery=celery_app,
    )
    pool = app.extensions["appforge"].redis.connection_pool
    held = [pool.get_connection() for _ in range(pool.max_connections)]
    try:
        token = jwt.encode(claims(sub=api.user_id), key, "RS256", headers={"kid": "key-1"})
        answer = app.test_client().post(
            f"/api/messages/{message_id}/events/token",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 503, answer.get_data(as_text=True)
        assert answer.get_json() == {"error": SENTENCE}
    finally:
        for connection in held:
            pool.release(connection)
        pool.disconnect()
