"""Bearer JWT auth: HS256 with AUTH_SECRET, or RS256 keys from AUTH_JWKS_URL (Clerk-compatible)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import jwt
from flask import current_app, g, request

from orchestrator import logs
from orchestrator.errors import Unauthorized
from orchestrator.tokens import EVENTS_AUDIENCE
from web.api.common import storable
from web.jwks import JwksKeys
from web.state import state

F = TypeVar("F", bound=Callable[..., Any])

_jwks_lock = threading.Lock()


def verify(token: str) -> str:
    """The token's subject (the user id), or Unauthorized."""
    settings = state().settings
    try:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if algorithm == "RS256" and settings.auth_jwks_url:
            key: Any = jwks_keys().key(header.get("kid"))
        elif algorithm == "HS256" and settings.auth_secret:
            # Only with AUTH_SECRET set: a JWKS-only deploy refuses HS256 (DESIGN section 15).
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
    if not user_audience(claims.get("aud")):
        raise Unauthorized("An events token opens its event stream only")
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


def jwks_keys() -> JwksKeys:
    """This app's key set for AUTH_JWKS_URL, made on first use."""
    extensions = current_app.extensions
    found: JwksKeys | None = extensions.get("appforge.jwks")
    if found is None:
        with _jwks_lock:
            found = extensions.get("appforge.jwks")
            if found is None:
                settings = state().settings
                assert settings.auth_jwks_url
                found = JwksKeys(
                    settings.auth_jwks_url, refetch_interval=settings.jwks_refetch_interval
                )
                extensions["appforge.jwks"] = found
    return found


def user_audience(audience: Any) -> bool:
    """False for an events token's audience: it opens one event stream, not the API."""
    values = audience if isinstance(audience, list) else [audience]
    return EVENTS_AUDIENCE not in values


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
        logs.set_fields(user_id=g.user_id)  # on every log line of this request
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def current_user_id() -> str:
    user_id: str = g.user_id
    return user_id
