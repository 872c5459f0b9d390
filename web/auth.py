"""Bearer JWT auth: HS256 with AUTH_SECRET, or RS256 keys from AUTH_JWKS_URL (Clerk-compatible)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jwt
from flask import g, request

from orchestrator.errors import Unauthorized
from web.api.common import storable
from web.state import state

F = TypeVar("F", bound=Callable[..., Any])

_jwks_clients: dict[str, jwt.PyJWKClient] = {}


def verify(token: str) -> str:
    """The token's subject (the user id), or Unauthorized."""
    settings = state().settings
    try:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if algorithm == "RS256" and settings.auth_jwks_url:
            client = _jwks_clients.setdefault(
                settings.auth_jwks_url, jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True)
            )
            key: Any = client.get_signing_key_from_jwt(token).key
        elif algorithm == "HS256" and settings.auth_secret:
            key = settings.auth_secret
        else:
            raise Unauthorized("Unsupported token algorithm")
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            options={"require": ["sub"], "verify_aud": False},
            leeway=5,
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("Invalid or expired token") from exc
    subject = claims.get("sub")
    # The subject becomes a row's key: refuse what a database could not store, too.
    if (
        not isinstance(subject, str)
        or not subject.strip()
        or len(subject) > 255
        or not storable(subject)
    ):
        raise Unauthorized("Invalid token subject")
    return subject


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing bearer token")
    return token.strip()


def require_user(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.user_id = verify(bearer_token())
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def current_user_id() -> str:
    user_id: str = g.user_id
    return user_id
