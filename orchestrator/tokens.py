"""Signed tokens the product issues: user JWTs for `orchestrator token`, and event-stream tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import jwt
import redis

STREAM_TOKEN_TTL_SECONDS = 300
EVENTS_AUDIENCE = "events"
# With AUTH_JWKS_URL alone there is no secret of ours: every web process shares this random one.
_EVENTS_KEY = "auth:events-token-key"


def user_token(secret: str, user_id: str, ttl_seconds: int = 30 * 24 * 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_seconds}, secret, "HS256")


def events_key(auth_secret: str | None, client: redis.Redis) -> str:
    """The key events tokens are signed with; never AUTH_SECRET itself.

    Derived from AUTH_SECRET when it is set, so an events token can never pass as a user token;
    without it (JWKS only), a random key kept in Redis for every web process to share.
    """
    if auth_secret:
        return hmac.new(auth_secret.encode(), b"appforge events token", hashlib.sha256).hexdigest()
    client.set(_EVENTS_KEY, secrets.token_hex(32), nx=True)
    value = client.get(_EVENTS_KEY)
    if value is None:  # evicted between the two calls: the next request makes a new one
        raise redis.ConnectionError("the events token key vanished from Redis")
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_token(secret: str, user_id: str, message_id: str) -> tuple[str, int]:
    """A token for one message's event stream alone, valid five minutes; (token, expires at)."""
    expires = int(time.time()) + STREAM_TOKEN_TTL_SECONDS
    claims = {"sub": user_id, "msg": message_id, "aud": EVENTS_AUDIENCE, "exp": expires}
    return jwt.encode(claims, secret, "HS256"), expires


def verify_stream_token(secret: str, token: str, message_id: str) -> str | None:
    """The user id the token was issued to, if it is valid for this message."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience=EVENTS_AUDIENCE)
    except jwt.PyJWTError:
        return None
    if claims.get("msg") != message_id or not isinstance(claims.get("sub"), str):
        return None
    return str(claims["sub"])
