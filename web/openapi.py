"""`/openapi.json`: the OpenAPI 3.1 description of the API, generated from each endpoint's
declaration (`web.endpoints`) and its pydantic models: what the views accept and answer."""

from __future__ import annotations

import copy
import functools
from http import HTTPStatus
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from web.endpoints import Endpoint, Raw
from web.errors import ErrorBody
from web.routes import endpoints

JSON = "application/json"
REF = "#/components/schemas/{model}"
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "user": [{"bearerAuth": []}],
    "public": [],
    # EventSource cannot send headers: an events token in the query works instead.
    "events": [{"bearerAuth": []}, {"eventsToken": []}],
}
RETRY_AFTER = {
    "description": "Seconds to wait",
    "required": True,
    "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
}
FAILURES: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("Invalid body, parameters or JSON", {}),
    401: ("No valid bearer token", {}),
    402: ("Out of credits", {}),
    403: ("The plan does not allow it", {}),
    404: ("Missing, or not the caller's", {}),
    409: ("The state forbids it", {}),
    413: ("Body over 1 MiB", {}),
    422: ("Idempotency-Key reused with a different body", {}),
    429: ("Too many prompts, or too many runs in progress", {"Retry-After": RETRY_AFTER}),
    503: ("The queue, the database or Redis cannot be reached", {}),
}
DESCRIPTION = (
    'The backend of an AI app builder. Errors are `{"error": "<sentence>"}`; a resource that '
    "belongs to someone else answers exactly like a missing one (404). Text anywhere in a request "
    "(body, path, query) must not contain NUL (U+0000) or unpaired surrogates, and JSON bodies may "
    "nest at most 64 levels, with finite numbers only: otherwise 400."
)
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "HS256 with AUTH_SECRET, or RS256 from AUTH_JWKS_URL (then HS256 is refused "
        "unless AUTH_SECRET is set too); `sub` is the user id.",
    },
    "eventsToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "From POST /api/messages/{messageId}/events/token: opens that message's "
        "event stream and nothing else (401 on every other route)",
    },
}

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """Public like /healthz, so clients and fuzzers can read it."""
    return jsonify(describe_api())


def describe_api() -> dict[str, Any]:
    """The whole description; a fresh copy, so a caller may change it freely."""
    return copy.deepcopy(_document())


@functools.cache
def _document() -> dict[str, Any]:
    return describe(endpoints())


class _Untitled(GenerateJsonSchema):
    """Pydantic's schemas without a title on every property."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


Key = tuple[int, str | int]


def describe(declared: list[Endpoint]) -> dict[str, Any]:
    """The OpenAPI document of these endpoints."""
    inputs: list[tuple[Key, JsonSchemaMode, TypeAdapter[Any]]] = []
    for n, spec in enumerate(declared):
        for part, mode, kind in _models(spec):
            inputs.append(((n, part), mode, TypeAdapter(kind)))
    inputs += [((-1, code), "serialization", TypeAdapter(ErrorBody)) for code in FAILURES]
    schemas, definitions = TypeAdapter.json_schemas(
        inputs, ref_template=REF, schema_generator=_Untitled
    )
    found = {key: schema for (key, _mode), schema in schemas.items()}
    paths: dict[str, dict[str, Any]] = {}
    for n, spec in enumerate(declared):
        paths.setdefault(spec.path, {})[spec.method] = _operation(spec, n, found)
    return {
        "openapi": "3.1.0",
        "info": {"title": "AppForge Messages API", "version": "1.0.0", "description": DESCRIPTION},
        "security": SECURITY["user"],
        "paths": paths,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": definitions.get("$defs", {}),
        },
    }


def _models(spec: Endpoint) -> list[tuple[str | int, JsonSchemaMode, Any]]:
    """What pydantic describes of `spec`: its body as read, its answers as written."""
    found: list[tuple[str | int, JsonSchemaMode, Any]] = []
    if spec.body is not None:
        found.append(("body", "validation", spec.body))
    found += [
        (code, "serialization", kind)
        for code, kind in spec.answers.items()
        if not isinstance(kind, Raw)
    ]
    return found


def _operation(spec: Endpoint, n: int, schemas: dict[Key, Any]) -> dict[str, Any]:
    answers = {
        str(code): _answer(spec, n, code, kind, schemas) for code, kind in spec.answers.items()
    }
    for code in sorted(set(spec.fails) | _implied_failures(spec)):
        if str(code) not in answers:
            description, headers = FAILURES[code]
            answers[str(code)] = _json(description, schemas[(-1, code)], headers)
    op: dict[str, Any] = {
        "summary": spec.summary,
        "tags": [spec.tag],
        "security": SECURITY[spec.auth],
        "responses": dict(sorted(answers.items())),
    }
    parameters = _path_parameters(spec) + _query_parameters(spec) + list(spec.params)
    if parameters:
        op["parameters"] = parameters
    if spec.body is not None:
        op["requestBody"] = {
            "required": spec.body_required,
            "content": {JSON: {"schema": schemas[(n, "body")]}},
        }
    return op


def _implied_failures(spec: Endpoint) -> set[int]:
    """What every endpoint of its kind may answer: a parameter or body refused (400, e.g. NUL in
    the URL), no valid token (401), a body over 1 MiB (413)."""
    implied = set()
    if spec.path_params() or spec.query is not None or spec.body is not None:
        implied.add(400)
    if spec.auth != "public":
        implied.add(401)
    if spec.body is not None:
        implied.add(413)
    return implied


def _answer(spec: Endpoint, n: int, code: int, kind: Any, schemas: dict[Key, Any]) -> Any:
    headers = spec.headers if code == min(spec.answers) else {}
    if isinstance(kind, Raw):
        out: dict[str, Any] = {"description": kind.description}
        if kind.media_type is not None:
            out["content"] = {kind.media_type: {"schema": kind.schema}}
        return out
    described = {
        name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
    }
    return _json(_phrase(code, kind), schemas[(n, code)], described)


def _phrase(code: int, kind: Any) -> str:
    doc = kind.__doc__ if isinstance(kind, type) and issubclass(kind, BaseModel) else None
    return (doc or "").strip().split("\n")[0] or HTTPStatus(code).phrase


def _json(description: str, schema: Any, headers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _path_parameters(spec: Endpoint) -> list[dict[str, Any]]:
    found = []
    for name, converter in spec.path_params():
        schema: dict[str, Any] = (
            {"type": "string"} if converter == "path" else {"type": "string", "minLength": 1}
        )
        found.append({"name": name, "in": "path", "required": True, "schema": schema})
    return found


def _query_parameters(spec: Endpoint) -> list[dict[str, Any]]:
    if spec.query is None:
        return []
    described = spec.query.model_json_schema(schema_generator=_Untitled)
    found = []
    for name, schema in described["properties"].items():
        schema = dict(schema)
        description = schema.pop("description", None)
        # A query value is never JSON null: absent is how a parameter says nothing.
        kinds = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in described.get("required", []),
            "schema": (kinds[0] if kinds else {}) | schema,
        }
        if description:
            parameter["description"] = description
        found.append(parameter)
    return found
