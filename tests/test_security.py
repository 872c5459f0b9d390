"""DESIGN section 15 and issue 8: no default secret, events tokens for their stream alone, JWKS
refetches bounded, public fragments without internals."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from orchestrator.errors import ConfigError
from orchestrator.settings import Settings
from orchestrator.wiring import dev_secret
from orchestrator.wiring.cli import dev_environment
from tests.conftest import SECRET, Api
from tests.fakes.jwks_server import CountingJwks, public_jwk
from tests.fakes.llm_server import Error, Reply, ToolCall
from tests.test_auth import OPEN_ENDPOINTS, PUBLIC_ENDPOINTS, assert_401, claims, fill, rsa_key

# The default the source used to carry: anyone could sign tokens with it.
OLD_PUBLIC_DEFAULT = "dev-only-insecure-secret-set-AUTH_SECRET-in-production"
ROOT = Path(__file__).resolve().parent.parent


def env_without_auth(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AUTH_SECRET", "AUTH_JWKS_URL")}
    return {**env, **extra}


# --- 1. No default AUTH_SECRET outside the development mode ---


def test_settings_carry_no_default_secret() -> None:
    assert Settings().auth_secret is None
    assert Settings.from_env({}).auth_secret is None


def test_the_web_app_refuses_to_start_without_a_secret_or_a_jwks_url(settings: Settings) -> None:
    from web import create_app

    with pytest.raises(ConfigError, match="AUTH_SECRET.*AUTH_JWKS_URL"):
        create_app(settings.model_copy(update=dict(auth_secret=None, auth_jwks_url=None)))
    # As an operator meets it: the gunicorn entry point, from the environment.
    started = subprocess.run(
        [sys.executable, "-c", "import web; web.create_app()"],
        env=env_without_auth(DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "Neither AUTH_SECRET nor AUTH_JWKS_URL is set" in started.stderr


def test_the_development_mode_makes_a_random_secret_of_its_own(
    tmp_path: Path, settings: Settings
) -> None:
    from web import create_app

    env = dev_environment({"DATA_DIR": str(tmp_path / "a")})
    secret = env["AUTH_SECRET"]
    assert len(secret) >= 32 and secret != OLD_PUBLIC_DEFAULT
    made = dev_secret.path(tmp_path / "a")
    assert made.read_text() == secret
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert dev_environment({"DATA_DIR": str(tmp_path / "a")})["AUTH_SECRET"] == secret  # kept
    assert dev_environment({"DATA_DIR": str(tmp_path / "b")})["AUTH_SECRET"] != secret  # random
    # A configured secret or JWKS is left alone: no development secret then.
    assert dev_environment({"DATA_DIR": str(tmp_path / "c"), "AUTH_SECRET": "mine"}) == {
        "DATA_DIR": str(tmp_path / "c"),
        "AUTH_SECRET": "mine",
    }
    assert "AUTH_SECRET" not in dev_environment(
        {"DATA_DIR": str(tmp_path / "d"), "AUTH_JWKS_URL": "https://x.test/jwks"}
    )
    # The app starts on what the development mode passes it.
    app_settings = Settings.from_env({**env, "DATABASE_URL": settings.database_url})
    assert app_settings.auth_secret == secret
    create_app(app_settings.model_copy(update=dict(redis_url=settings.redis_url)))


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.wiring.cli", *args],
        env=env_without_auth(
            DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}", DATA_DIR=str(tmp_path), **env
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_orchestrator_token_signs_with_the_development_secret_or_says_what_to_set(
    tmp_path: Path,
) -> None:
    assert cli(tmp_path, "db", "upgrade").returncode == 0
    refused = cli(tmp_path, "token", "dana")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "no AUTH_SECRET is set" in refused.stderr and "AUTH_SECRET" in refused.stderr
    jwks_only = cli(tmp_path, "token", "dana", AUTH_JWKS_URL="https://x.test/jwks")
    assert jwks_only.returncode == 1 and "AUTH_JWKS_URL" in jwks_only.stderr

    secret = dev_secret.ensure(tmp_path)
    made = cli(tmp_path, "token", "dana")
    assert made.returncode == 0, made.stderr
    assert jwt.decode(made.stdout.strip(), secret, algorithms=["HS256"])["sub"] == "dana"


@pytest.fixture
def jwks() -> Iterator[tuple[CountingJwks, rsa.RSAPrivateKey]]:
    key = rsa_key()
    server = CountingJwks([public_jwk(key, "key-1")])
    yield server, key
    server.close()


def jwks_only_client(
    settings: Settings, celery_app: Any, url: str, **overrides: Any
) -> httpx.Client | Any:
    from web import create_app

    configured = settings.model_copy(update=dict(auth_secret=None, auth_jwks_url=url, **overrides))
    return create_app(configured, celery=celery_app).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_with_only_a_jwks_url_hs256_tokens_are_refused(
    settings: Settings, celery_app: Any, jwks: tuple[CountingJwks, rsa.RSAPrivateKey]
) -> None:
    from web import create_app

    server, key = jwks
    # Configured as a Clerk deploy is: the JWKS URL and nothing about HS256.
    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "AUTH_JWKS_URL": server.url,
    }
    client = create_app(Settings.from_env(env), celery=celery_app).test_client()
    for secret in (OLD_PUBLIC_DEFAULT, SECRET):
        forged = jwt.encode(claims(), secret, "HS256")
        assert_401(client.get("/api/me", headers=bearer(forged)), secret)
    token = jwt.encode(claims(sub="clerk_jwks_only"), key, "RS256", headers={"kid": "key-1"})
    assert client.get("/api/me", headers=bearer(token)).status_code == 200


# --- 5. JWKS refetches are bounded ---


def test_unknown_kids_cannot_make_every_request_refetch_the_key_set(
    settings: Settings, celery_app: Any, jwks: tuple[CountingJwks, rsa.RSAPrivateKey]
) -> None:
    server, key = jwks
    client = jwks_only_client(settings, celery_app, server.url)
    good = jwt.encode(claims(sub="clerk_kid_flood"), key, "RS256", headers={"kid": "key-1"})
    assert client.get("/api/me", headers=bearer(good)).status_code == 200
    for n in range(40):
        stranger = jwt.encode(claims(), rsa_key(), "RS256", headers={"kid": f"unknown-{n}"})
        assert_401(client.get("/api/me", headers=bearer(stranger)))
    assert client.get("/api/me", headers=bearer(good)).status_code == 200
    # One fetch for the first token, at most one more for the flood, within the 30 s interval.
    assert 1 <= server.fetches <= 2, server.fetches


def test_a_newly_rotated_key_is_fetched_once_the_interval_has_passed(
    settings: Settings, celery_app: Any, jwks: tuple[CountingJwks, rsa.RSAPrivateKey]
) -> None:
    server, key = jwks
    interval = 0.5
    client = jwks_only_client(settings, celery_app, server.url, jwks_refetch_interval=interval)
    first = jwt.encode(claims(sub="clerk_rotation"), key, "RS256", headers={"kid": "key-1"})
    assert client.get("/api/me", headers=bearer(first)).status_code == 200
    rotated = rsa_key()
    server.keys = [public_jwk(key, "key-1"), public_jwk(rotated, "key-2")]
    time.sleep(interval * 1.5)
    token = jwt.encode(claims(sub="clerk_rotation"), rotated, "RS256", headers={"kid": "key-2"})
    answer = client.get("/api/me", headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    assert server.fetches == 2


def test_an_unreachable_jwks_is_not_asked_again_for_every_token(
    settings: Settings, celery_app: Any
) -> None:
    server = CountingJwks([])
    server.close()  # nobody listens there any more
    client = jwks_only_client(settings, celery_app, server.url)
    for _ in range(5):
        token = jwt.encode(claims(), rsa_key(), "RS256", headers={"kid": "key-1"})
        assert_401(client.get("/api/me", headers=bearer(token)))
    extensions = client.application.extensions
    assert extensions["appforge.jwks"].fetches == 1


# --- 2. An events token opens its message's stream and nothing else ---


@pytest.fixture
def finished(api: Api) -> tuple[Api, str]:
    project = api.project()
    sent = api.send(project["id"]).json()
    api.wait_terminal(sent["messageId"])
    return api, str(sent["messageId"])


def test_an_events_token_is_refused_on_every_other_route(
    finished: tuple[Api, str], server: str, settings: Settings
) -> None:
    from web import create_app

    api, message_id = finished
    events_token = api.post(f"/api/messages/{message_id}/events/token").json()["token"]
    # Signed the way it used to be, with AUTH_SECRET itself: still not a user token.
    raw = jwt.encode(
        {**claims(sub=api.user_id), "msg": message_id, "aud": "events"}, SECRET, "HS256"
    )
    swept = 0
    with httpx.Client(base_url=server, timeout=10) as anonymous:
        for rule in create_app(settings).url_map.iter_rules():
            if rule.endpoint in PUBLIC_ENDPOINTS | OPEN_ENDPOINTS | {"static"}:
                continue
            path = fill(rule.rule, {name: [message_id] for name in rule.arguments})
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                for token in (events_token, raw):
                    for params in ({}, {"token": token}):
                        if rule.endpoint == "events.stream" and params and token is events_token:
                            continue  # its one use, checked below
                        with anonymous.stream(
                            method, path, headers=bearer(token), params=params
                        ) as answer:
                            answer.read()
                            assert_401(answer, f"{method} {rule.rule} {params}")
                        swept += 1
        assert swept >= 40
        opened = anonymous.get(f"/api/messages/{message_id}/events", params={"token": events_token})
        assert opened.status_code == 200 and "event: done" in opened.text
    # A user's own bearer token still opens the stream, as before.
    assert api.get(f"/api/messages/{message_id}/events").status_code == 200


def test_with_only_a_jwks_url_events_tokens_still_work(
    settings: Settings,
    celery_app: Any,
    jwks: tuple[CountingJwks, rsa.RSAPrivateKey],
    finished: tuple[Api, str],
) -> None:
    server, key = jwks
    api, message_id = finished
    client = jwks_only_client(settings, celery_app, server.url)
    owner = jwt.encode(claims(sub=api.user_id), key, "RS256", headers={"kid": "key-1"})
    issued = client.post(f"/api/messages/{message_id}/events/token", headers=bearer(owner))
    assert issued.status_code == 200, issued.get_json()
    token = issued.get_json()["token"]
    opened = client.get(f"/api/messages/{message_id}/events", query_string={"token": token})
    assert opened.status_code == 200 and b"event: done" in opened.data
    assert_401(client.get("/api/me", headers=bearer(token)))


# --- 4. The public fragment carries no internal details ---


def test_the_public_fragment_has_no_attempt_log_provider_errors_or_sandbox_details(
    api: Api, llm: Any, fallback_llm: Any
) -> None:
    # The primary fails once, so the attempt log holds a provider error to leak.
    write = ToolCall("write_file", {"path": "index.html", "content": "<p>x</p>"})
    llm.script(
        Error(status=500, message="upstream exploded: internal-secret-detail"),
        Reply("Writing. ", tool_calls=[write]),
        Reply("done", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})]),
    )
    project = api.project()
    sent = api.send(project["id"]).json()
    assert api.wait_terminal(sent["messageId"])["status"] == "COMPLETE"
    owned = api.get(f"/api/messages/{sent['messageId']}/fragment").json()
    # The owner keeps every detail.
    assert {"attemptLog", "sandbox", "provider", "usage"} <= set(owned["metadata"])
    assert "internal-secret-detail" in json.dumps(owned["metadata"])
    full = api.get(f"/api/fragments/{owned['id']}/full").json()
    assert full["fragment"]["metadata"] == owned["metadata"]

    public = httpx.get(str(api.http.base_url.join(f"/api/fragments/{owned['id']}")))
    assert public.status_code == 200
    body = public.json()
    assert set(body["metadata"]) <= {"summary", "title", "steps", "stopReason", "checks"}
    assert body["metadata"]["summary"] == "S"
    # Of the checks, only their status (DESIGN section 16); the tests' workers check nothing.
    assert body["metadata"]["checks"] == {"status": "skipped"}
    assert "internal-secret-detail" not in public.text
    assert "attemptLog" not in public.text
    assert {k: v for k, v in body.items() if k != "metadata"} == {
        k: v for k, v in owned.items() if k != "metadata"
    }
