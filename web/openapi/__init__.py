"""The OpenAPI 3.1 description of the HTTP API (DESIGN section 4), built as a plain dict."""

from __future__ import annotations

import copy
import functools
from typing import Any

from web.openapi.components import BEARER, RESPONSE_SCHEMAS, request_schemas
from web.openapi.paths import (
    fragment_paths,
    message_paths,
    operations_paths,
    resource_paths,
    version_paths,
)


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AppForge Messages API",
            "version": "1.0.0",
            "description": (
                'The backend of an AI app builder. Errors are `{"error": "<sentence>"}`; '
                "a resource that belongs to someone else answers exactly like a missing one "
                "(404). Text anywhere in a request (body, path, query) must not contain NUL "
                "(U+0000) or unpaired surrogates, and JSON bodies may nest at most 64 levels, "
                "with finite numbers only: otherwise 400."
            ),
        },
        "security": BEARER,
        "paths": resource_paths()
        | message_paths()
        | fragment_paths()
        | version_paths()
        | operations_paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 with AUTH_SECRET, or RS256 from AUTH_JWKS_URL (then "
                    "HS256 is refused unless AUTH_SECRET is set too); `sub` is the user id.",
                },
                "eventsToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "From POST /api/messages/{messageId}/events/token: opens "
                    "that message's event stream and nothing else (401 on every other route)",
                },
            },
            "schemas": {**request_schemas(), **RESPONSE_SCHEMAS},
        },
    }


def describe_api() -> dict[str, Any]:
    """The whole description; a fresh copy, so a caller may change it freely."""
    return copy.deepcopy(_document())
