"""Bearer JWT auth: every way a token can be wrong is a 401, JWKS keys work, tenants stay apart."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from models import transaction
from orchestrator.runs import lifecycle
from orchestrator.runs.lifecycle import FragmentValues
from orchestrator.settings import Settings
from tests.conftest import SECRET, Api
from tests.fakes.jwks_server import CountingJwks, public_jwk

# Routes meant to answer without auth, to anyone who holds the unguessable id.
PUBLIC_ENDPOINTS = {
    "fragments.public",
    "preview.preview_root",
    "preview.preview",
    # A version's screenshot (DESIGN section 16): public like its preview.
    "fragments.screenshot",
    # A published app (DESIGN section 18): public by its slug, served like a preview.
    "published.app_root",
    "published.app_file",
}
# Public by nature, without ids to guard.
OPEN_ENDPOINTS = {"health.healthz", "health.readyz", "health.metrics", "docs.openapi", "page.index"}


def b64url(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256_by_hand(payload: bytes, key: bytes) -> str:
    """A token PyJWT would refuse to make: its payload written as raw bytes, signed for real."""
    signing_input = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "user_auth_test", "iat": now, "exp": now + 300, **extra}


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def assert_401(answer: httpx.Response | Any, where: str = "") -> None:
    body = answer.json() if isinstance(answer, httpx.Response) else answer.get_json()
    assert answer.status_code == 401, (where, body)
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]


@pytest.fixture
def anonymous(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=10) as client:
        yield client


def me_with(client: httpx.Client, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.get("/api/me", headers=headers)


def test_a_valid_token_is_accepted(anonymous: httpx.Client) -> None:
    token = jwt.encode(claims(), SECRET, "HS256")
    answer = me_with(anonymous, f"Bearer {token}")
    assert answer.status_code == 200 and answer.json()["userId"] == "user_auth_test"


def test_a_missing_header_is_401(anonymous: httpx.Client) -> None:
    assert_401(me_with(anonymous, None))


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Token {token}",
        "{token}",
        "Bearer: {token}",
        "Bearer {token} {token}",
    ],
)
def test_a_wrong_scheme_or_an_empty_token_is_401(
    anonymous: httpx.Client, authorization: str
) -> None:
    token = jwt.encode(claims(), SECRET, "HS256")
    assert_401(me_with(anonymous, authorization.format(token=token)))


@pytest.mark.parametrize(
    "token",
    [
        "nope",
        "a.b.c",
        "...",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        f"{b64url({'alg': 'HS256'})}.not-base64!.sig",
        f"{b64url(['not', 'an', 'object'])}.{b64url(claims())}.sig",
        "x" * 4000,
    ],
)
def test_a_malformed_token_is_401(anonymous: httpx.Client, token: str) -> None:
    assert_401(me_with(anonymous, f"Bearer {token}"))


def test_a_valid_token_with_trailing_garbage_is_401(anonymous: httpx.Client) -> None:
    token = jwt.encode(claims(), SECRET, "HS256")
    assert_401(me_with(anonymous, f"Bearer {token}x"))
    assert_401(me_with(anonymous, f"Bearer {token}.extra"))


def test_an_expired_token_is_401(anonymous: httpx.Client) -> None:
    expired = jwt.encode(claims(exp=int(time.time()) - 60), SECRET, "HS256")
    answer = me_with(anonymous, f"Bearer {expired}")
    assert_401(answer)
    assert answer.json() == {"error": "Invalid or expired token"}


def test_a_token_not_yet_valid_is_401(anonymous: httpx.Client) -> None:
    early = jwt.encode(claims(nbf=int(time.time()) + 600), SECRET, "HS256")
    assert_401(me_with(anonymous, f"Bearer {early}"))


def test_a_wrong_signature_is_401(anonymous: httpx.Client) -> None:
    forged = jwt.encode(claims(), "another-secret-that-is-long-enough-too!", "HS256")
    assert_401(me_with(anonymous, f"Bearer {forged}"))
    good = jwt.encode(claims(), SECRET, "HS256")
    header, payload, _ = good.split(".")
    tampered = f"{header}.{b64url(claims(sub='someone_else'))}.{good.split('.')[2]}"
    assert_401(me_with(anonymous, f"Bearer {tampered}"))
    assert_401(me_with(anonymous, f"Bearer {header}.{payload}."))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_an_unsigned_alg_none_token_is_401(anonymous: httpx.Client, alg: str) -> None:
    unsigned = f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url(claims())}."
    assert_401(me_with(anonymous, f"Bearer {unsigned}"))


@pytest.mark.filterwarnings("ignore:The HMAC key")
@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_another_hmac_algorithm_signed_with_the_right_secret_is_401(
    anonymous: httpx.Client, alg: str
) -> None:
    assert_401(me_with(anonymous, f"Bearer {jwt.encode(claims(), SECRET, alg)}"))


def test_rs256_without_a_configured_jwks_is_401(anonymous: httpx.Client) -> None:
    token = jwt.encode(claims(), rsa_key(), "RS256", headers={"kid": "k1"})
    assert_401(me_with(anonymous, f"Bearer {token}"))


def test_an_hs256_token_signed_with_the_public_key_is_401_when_jwks_is_used(
    jwks_app: Any,
) -> None:
    """The classic confusion attack: HS256 keyed with the RSA public key's text."""
    client, key = jwks_app
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hs256_by_hand(json.dumps(claims()).encode(), public_pem)
    assert_401(client.get("/api/me", headers={"Authorization": f"Bearer {token}"}))


@pytest.mark.parametrize(
    "subject",
    [123, 0, None, True, ["user"], {"id": "user"}, "", "   ", "x" * 256, "bad\u0000user"],
    ids=["int", "zero", "null", "bool", "list", "object", "empty", "blank", "long", "nul"],
)
def test_a_token_without_a_usable_string_subject_is_401(
    anonymous: httpx.Client, subject: Any
) -> None:
    token = jwt.encode(claims(sub=subject), SECRET, "HS256")
    assert_401(me_with(anonymous, f"Bearer {token}"))


def test_a_token_without_sub_is_401(anonymous: httpx.Client) -> None:
    no_sub = claims()
    del no_sub["sub"]
    assert_401(me_with(anonymous, f"Bearer {jwt.encode(no_sub, SECRET, 'HS256')}"))


def test_a_subject_with_a_lone_surrogate_is_401(anonymous: httpx.Client) -> None:
    payload = b'{"sub":"a\\ud800b","exp":%d}' % (int(time.time()) + 60)
    token = hs256_by_hand(payload, SECRET.encode())
    assert_401(me_with(anonymous, f"Bearer {token}"))


def test_every_protected_route_answers_401_without_a_token(
    anonymous: httpx.Client, settings: Settings
) -> None:
    from web import create_app

    for rule in create_app(settings).url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS | OPEN_ENDPOINTS | {"static"}:
            continue
        path = fill(rule.rule, {name: [str(uuid.uuid4())] for name in rule.arguments})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            with anonymous.stream(method, path) as answer:
                answer.read()
                assert_401(answer, f"{method} {rule.rule}")


# --- RS256 keys from a JWKS endpoint (Clerk-compatible) ---


@pytest.fixture
def jwks_app(settings: Settings, celery_app: Any) -> Iterator[tuple[Any, rsa.RSAPrivateKey]]:
    from web import create_app

    key = rsa_key()
    jwks = CountingJwks([public_jwk(key, "key-1")])
    app = create_app(settings.model_copy(update=dict(auth_jwks_url=jwks.url)), celery=celery_app)
    yield app.test_client(), key
    jwks.close()


def test_an_rs256_token_from_the_jwks_key_is_accepted(jwks_app: Any) -> None:
    client, key = jwks_app
    token = jwt.encode(claims(sub="clerk_user_1"), key, "RS256", headers={"kid": "key-1"})
    answer = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["userId"] == "clerk_user_1"


def test_an_rs256_token_signed_by_another_key_is_401(jwks_app: Any) -> None:
    client, _ = jwks_app
    for kid in ("key-1", "unknown-key"):
        token = jwt.encode(claims(), rsa_key(), "RS256", headers={"kid": kid})
        assert_401(client.get("/api/me", headers={"Authorization": f"Bearer {token}"}))


def test_an_expired_rs256_token_is_401(jwks_app: Any) -> None:
    client, key = jwks_app
    token = jwt.encode(claims(exp=int(time.time()) - 60), key, "RS256", headers={"kid": "key-1"})
    assert_401(client.get("/api/me", headers={"Authorization": f"Bearer {token}"}))


def test_an_unreachable_jwks_is_401_not_500(settings: Settings, celery_app: Any) -> None:
    from web import create_app

    gone = settings.model_copy(
        update=dict(auth_jwks_url="http://127.0.0.1:9/.well-known/jwks.json")
    )
    client = create_app(gone, celery=celery_app).test_client()
    token = jwt.encode(claims(), rsa_key(), "RS256", headers={"kid": "key-1"})
    assert_401(client.get("/api/me", headers={"Authorization": f"Bearer {token}"}))


# --- Tenants: another user's ids answer exactly like ids that do not exist ---

# What a request needs to get past validation to the ownership check, by endpoint.
BODIES: dict[str, dict[str, Any]] = {
    "messages.add_attachment": {"url": "https://example.com/a.png", "size": 1},
    "code_io.start_import": {"url": "https://github.com/acme/app"},
    "code_io.push": {"url": "https://github.com/acme/app", "branch": "main"},
}


def fill(rule: str, ids: dict[str, list[str]], pick: int = 0) -> str:
    """The rule's path with its arguments filled in: the `pick`-th id of each kind."""

    def value(match: re.Match[str]) -> str:
        choices = ids[match.group(1)]
        return choices[pick % len(choices)]

    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", value, rule)


@pytest.fixture
def alices_things(
    make_api: Callable[[], Api], worker: Any, db: Any, settings: Settings
) -> tuple[Api, dict]:
    alice = make_api()
    project = alice.project()
    sent = alice.send(project["id"]).json()
    alice.wait_terminal(sent["messageId"])
    attached = alice.post(
        f"/api/messages/{sent['id']}/attachments", json={"url": "https://x.test/a", "size": 1}
    )
    assert attached.status_code == 201
    with transaction(db) as session:
        fragment = lifecycle.upsert_fragment(
            session,
            sent["messageId"],
            FragmentValues(
                title="T",
                files={"index.html": "<h1>alice</h1>"},
                framework="NEXTJS",
                sandbox_id=None,
                sandbox_url=None,
                metadata={},
            ),
        )
    # An import from the tests' Git server of a repository it does not have: it ends FAILED.
    started = alice.post(
        f"/api/projects/{project['id']}/imports",
        json={"url": f"{settings.import_allowed_hosts[0]}/nothing.git"},
    )
    assert started.status_code == 202, started.text
    ids = {
        "project_id": [project["id"]],
        "conversation_id": [sent["conversationId"]],
        "message_id": [sent["id"], sent["messageId"]],
        "fragment_id": [fragment.id],
        "import_id": [started.json()["id"]],
        # A chat is one of the caller's conversations, or a project's default one (DESIGN 19).
        "chat_id": [sent["conversationId"], project["id"]],
    }
    return alice, ids


def answer_of(client: httpx.Client, method: str, path: str, body: Any) -> tuple[int, Any]:
    with client.stream(method, path, json=body) as answer:
        if answer.headers.get("Content-Type", "").startswith("text/event-stream"):
            return answer.status_code, "a stream"  # never read to its end: it may stay open
        answer.read()
        return answer.status_code, answer.json()


def test_every_route_with_an_id_answers_404_for_another_users_ids(
    alices_things: tuple[Api, dict], make_api: Callable[[], Api], settings: Settings
) -> None:
    """Generated from the url_map, so a new route with an id is covered without a new test."""
    from web import create_app

    alice, ids = alices_things
    bob = make_api()
    bob.get("/api/me")
    rules = list(create_app(settings).url_map.iter_rules())
    endpoints = {rule.endpoint for rule in rules}
    assert endpoints >= PUBLIC_ENDPOINTS | OPEN_ENDPOINTS, "update PUBLIC_ENDPOINTS"
    swept = 0
    for rule in rules:
        if not rule.arguments or rule.endpoint in PUBLIC_ENDPOINTS | {"static"}:
            continue
        unknown = set(rule.arguments) - set(ids)
        assert not unknown, f"{rule.rule}: give the sweep an id of Alice's for {unknown}"
        missing = {name: [str(uuid.uuid4())] for name in rule.arguments}
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            body = BODIES.get(rule.endpoint)
            expected = answer_of(bob.http, method, fill(rule.rule, missing), body)
            assert expected[0] == 404, f"{method} {rule.rule} for a missing id: {expected}"
            for pick in range(max(len(ids[name]) for name in rule.arguments)):
                path = fill(rule.rule, ids, pick)
                got = answer_of(bob.http, method, path, body)
                assert got == expected, f"Bob's {method} {path} ({rule.rule}): {got}"
                swept += 1
    assert swept >= 12
    # Nothing Bob tried changed Alice's things, and she still sees them all.
    message = alice.message(ids["message_id"][1])
    assert message["status"] == "COMPLETE"
    assert len(alice.get(f"/api/messages/{ids['message_id'][0]}/attachments").json()) == 1
    assert alice.get(f"/api/fragments/{ids['fragment_id'][0]}/full").status_code == 200


def test_ids_in_queries_and_bodies_answer_404_for_another_user(
    alices_things: tuple[Api, dict], make_api: Callable[[], Api]
) -> None:
    _, ids = alices_things
    bob = make_api()
    project, conversation = ids["project_id"][0], ids["conversation_id"][0]
    requests = [
        ("GET", "/api/messages", {"params": {"projectId": project}}),
        ("GET", "/api/messages", {"params": {"conversationId": conversation}}),
        ("GET", "/api/conversations", {"params": {"projectId": project}}),
        ("POST", "/api/conversations", {"json": {"projectId": project}}),
        ("POST", "/api/messages", {"json": {"message": "Build it", "projectId": project}}),
        (
            "POST",
            "/api/messages",
            {"json": {"message": "Build it", "conversationId": conversation}},
        ),
        ("DELETE", "/api/messages", {"json": {"messageId": ids["message_id"][1]}}),
    ]
    for method, path, options in requests:
        answer = bob.request(method, path, **options)
        assert answer.status_code == 404, (method, path, options, answer.text)
    assert bob.get("/api/projects").json() == []


def test_public_routes_serve_anyone_who_holds_the_fragment_id(
    alices_things: tuple[Api, dict], anonymous: httpx.Client
) -> None:
    _, ids = alices_things
    fragment_id = ids["fragment_id"][0]
    assert anonymous.get(f"/api/fragments/{fragment_id}").status_code == 200
    page = anonymous.get(f"/preview/{fragment_id}/")
    assert page.status_code == 200 and "alice" in page.text
