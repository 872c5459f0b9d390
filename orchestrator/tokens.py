"""Signed tokens the product issues: user JWTs for `orchestrator token`, and event-stream tokens."""

from __future__ import annotations

import time

import jwt

STREAM_TOKEN_TTL_SECONDS = 300


def user_token(secret: str, user_id: str, ttl_seconds: int = 30 * 24 * 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_seconds}, secret, "HS256")


def stream_token(secret: str, user_id: str, message_id: str) -> tuple[str, int]:
    """A token for one message's event stream alone, valid five minutes; (token, expires at)."""
    expires = int(time.time()) + STREAM_TOKEN_TTL_SECONDS
    claims = {"sub": user_id, "msg": message_id, "aud": "events", "exp": expires}
    return jwt.encode(claims, secret, "HS256"), expires


def verify_stream_token(secret: str, token: str, message_id: str) -> str | None:
    """The user id the token was issued to, if it is valid for this message."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience="events")
    except jwt.PyJWTError:
        return None
    if claims.get("msg") != message_id or not isinstance(claims.get("sub"), str):
        return None
    return str(claims["sub"])
