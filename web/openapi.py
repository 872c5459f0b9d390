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
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "user": [{"bearerAuth": []}],
    "public": [],
    # EventSource cannot send headers: an events token in the query works instead.
    "events": [{"bearerAuth": []}, {"eventsToken": []}],
}
FAILURES = {
    400: "Invalid body, parameters or JSON",
    401: "No valid bearer token",
    402: "Out of credits",
    403: "The plan does not allow it",
    404: "Missing, or not the caller's",
    409: "The state forbids it",
    413: "Body over 1 MiB",
    422: "Idempotency-Key reused with a different body",
    429: "Too many prompts, or too many runs in progress",
    503: "The queue, the database or Redis cannot be reached",
}
RETRY_AFTER = {"required": True, "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"}}
INFO = {
    "title": "AppForge Messages API",
    "version": "1.0.0",
    "description": 'The backend of an AI app builder. Errors are `{"error": "<sentence>"}`; a '
    "resource that belongs to someone else answers exactly like a missing one (404). Text "
    "anywhere in a request (body, path, query) must not contain NUL (U+0000) or unpaired "
    "surrogates, and JSON bodies may nest at most 64 levels, with finite numbers only: else 400.",
}
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


def describe(declared: list[Endpoint]) -> dict[str, Any]:
    """The OpenAPI document of these endpoints."""
    # One pass over every model, so each shape is one component that the others refer to:
    # bodies as they are read, answers as they are written.
    inputs: list[tuple[Any, JsonSchemaMode, TypeAdapter[Any]]] = [
        ((-1, code), "serialization", TypeAdapter(ErrorBody)) for code in FAILURES
    ]
    for n, spec in enumerate(declared):
        if spec.body is not None:
            inputs.append(((n, "body"), "validation", TypeAdapter(spec.body)))
        for code, kind in spec.answers.items():
            if not isinstance(kind, Raw):
                inputs.append(((n, code), "serialization", TypeAdapter(kind)))
    found, definitions = TypeAdapter.json_schemas(
        inputs, ref_template="#/components/schemas/{model}", schema_generator=_Untitled
    )
    schemas = {key: schema for (key, _mode), schema in found.items()}
    paths: dict[str, dict[str, Any]] = {}
    for n, spec in enumerate(declared):
        paths.setdefault(spec.path, {})[spec.method] = _operation(spec, n, schemas)
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "security": SECURITY["user"],
        "paths": paths,
        "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": definitions["$defs"]},
    }


def _operation(spec: Endpoint, n: int, schemas: dict[Any, Any]) -> dict[str, Any]:
    answers = {code: _answer(spec, n, code, kind, schemas) for code, kind in spec.answers.items()}
    # What every endpoint of its kind may answer: a parameter or body refused (400, such as NUL
    # in the URL), no valid token (401), a body over 1 MiB (413).
    implied = {
        400: bool(spec.path_params() or spec.query or spec.body),
        401: spec.auth != "public",
        413: spec.body is not None,
    }
    for code in set(spec.fails) | {code for code, applies in implied.items() if applies}:
        if code not in answers:
            headers = {"Retry-After": RETRY_AFTER} if code == 429 else {}
            answers[code] = _json(FAILURES[code], schemas[(-1, code)], headers)
    op: dict[str, Any] = {
        "summary": spec.summary,
        "tags": [spec.tag],
        "security": SECURITY[spec.auth],
        "responses": {str(code): answers[code] for code in sorted(answers)},
    }
    if parameters := _path_parameters(spec) + _query_parameters(spec) + list(spec.params):
        op["parameters"] = parameters
    if spec.body is not None:
        schema = {JSON: {"schema": schemas[(n, "body")]}}
        op["requestBody"] = {"required": spec.body_required, "content": schema}
    return op


def _answer(spec: Endpoint, n: int, code: int, kind: Any, schemas: dict[Any, Any]) -> Any:
    said = spec.headers if code == next(iter(spec.answers)) else {}
    headers = {
        name: {"description": text, "schema": {"type": "string"}} for name, text in said.items()
    }
    if isinstance(kind, Raw):
        content = {kind.media_type: {"schema": kind.schema}} if kind.media_type else None
        out = {"description": kind.description} | ({"content": content} if content else {})
        return out | ({"headers": headers} if headers else {})
    doc = kind.__doc__ if isinstance(kind, type) and issubclass(kind, BaseModel) else None
    description = (doc or "").strip().split("\n")[0] or HTTPStatus(code).phrase
    return _json(description, schemas[(n, code)], headers)


def _json(description: str, schema: Any, headers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    return out | ({"headers": headers} if headers else {})


def _path_parameters(spec: Endpoint) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        | ({} if converter == "path" else {"schema": {"type": "string", "minLength": 1}})
        for name, converter in spec.path_params()
    ]


def _query_parameters(spec: Endpoint) -> list[dict[str, Any]]:
    described = spec.query.model_json_schema(schema_generator=_Untitled) if spec.query else {}
    found = []
    for name, schema in described.get("properties", {}).items():
        schema = dict(schema)
        description = schema.pop("description", None)
        # A query value is never JSON null: absent is how a parameter says nothing.
        kinds = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
        if "default" in schema and schema["default"] is None:
            del schema["default"]
        required = name in described.get("required", [])
        parameter = {"name": name, "in": "query", "required": required}
        found.append(parameter | {"schema": (kinds[0] if kinds else {}) | schema})
        if description:
            found[-1]["description"] = description
    return found
