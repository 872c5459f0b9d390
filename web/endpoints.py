"""An endpoint declared once: its route, who may call it, its request and answer models.

    @bp.operation("POST /api/projects", answer=contract.Project, status=201, body=CreateProject)
    def create(body: CreateProject) -> Any:
        ...  # its docstring's first paragraph is its summary in /openapi.json

The view gets its parsed `body` and `query` once the caller's token is checked, and returns what
its answer model writes (a model, a row it reads, a list of them, None), optionally with a status
(`value, 503`) or headers (`value, {"Link": ...}`); a Flask `Response` (an event stream, a file)
goes out as it is. `web.openapi` describes the API from the same declarations.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, TypeAdapter, ValidationError

from orchestrator.errors import InvalidRequest
from web.api.common import json_body, parse
from web.auth import require_user

View = Callable[..., Any]
# A user's bearer token, anyone, or (the event stream) a bearer token or an events token.
Auth = Literal["user", "public", "events"]
PARAMETER = re.compile(r"<(?:(\w+):)?(\w+)>")


@dataclass(frozen=True)
class Raw:
    """An answer that is not JSON: its media type (None: the file's own) and its body's schema."""

    media_type: str | None
    description: str
    schema: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """One method of one route, as `web.openapi` describes it."""

    method: str
    rule: str
    summary: str
    tag: str
    auth: Auth
    answers: dict[int, Any]  # status -> a type pydantic writes, or Raw; the first is the success
    fails: tuple[int, ...]
    body: type[BaseModel] | None
    body_required: bool
    query: type[BaseModel] | None
    params: tuple[dict[str, Any], ...]  # OpenAPI parameters the view reads itself (headers)
    headers: dict[str, str]  # the success answer's headers: name -> what it says

    @property
    def path(self) -> str:
        """The rule as OpenAPI writes it: `<message_id>` is `{messageId}`."""
        return PARAMETER.sub(lambda m: "{" + camel(m.group(2)) + "}", self.rule)

    def path_params(self) -> list[tuple[str, str | None]]:
        """Each path parameter's OpenAPI name and its converter (`path` for `<path:...>`)."""
        return [(camel(m.group(2)), m.group(1)) for m in PARAMETER.finditer(self.rule)]


def header(name: str, description: str, **schema: Any) -> dict[str, Any]:
    """A request header the view reads itself, as `params=` declares it."""
    kind = {"type": "string", **schema}
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": kind,
    }


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Api(Blueprint):
    """A blueprint whose routes are declared with their models, once."""

    def __init__(self, name: str, import_name: str, *, tag: str | None = None) -> None:
        super().__init__(name, import_name)
        self.tag = tag or name
        self.endpoints: list[Endpoint] = []

    def operation(
        self,
        route: str,
        *,
        answer: Any,
        status: int = 200,
        also: dict[int, Any] | None = None,
        fails: str = "",
        auth: Auth = "user",
        body: type[BaseModel] | None = None,
        body_required: bool = True,
        query: type[BaseModel] | None = None,
        params: tuple[dict[str, Any], ...] = (),
        headers: dict[str, str] | None = None,
        tag: str | None = None,
    ) -> Callable[[View], View]:
        """Declare `route` ("METHOD /rule"). `fails` lists its error statuses ("404 409"); those
        every endpoint of its kind has (400, 401, 413) are added. `also` adds answers by status:
        a model for an error status replaces the plain error body."""
        method, rule = route.split(" ", 1)
        answers = {status: answer, **(also or {})}
        writers = {
            code: TypeAdapter(kind) for code, kind in answers.items() if not isinstance(kind, Raw)
        }

        def register(view: View) -> View:
            def handle(**path: Any) -> Any:
                if body is not None:
                    sent = body_required or bool(request.get_data(cache=True))
                    path["body"] = parse(body, json_body() if sent else {})
                if query is not None:
                    path["query"] = read_query(query)
                return write(view(**path), status, writers)

            handle.__name__ = view.__name__
            handler = require_user(handle) if auth == "user" else handle
            self.add_url_rule(rule, view_func=handler, methods=[method])
            summary = (view.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            self.endpoints.append(
                Endpoint(
                    method.lower(),
                    rule,
                    summary,
                    tag or self.tag,
                    auth,
                    answers,
                    tuple(int(code) for code in fails.split()),
                    body,
                    body_required,
                    query,
                    params,
                    headers or {},
                )  # fmt: skip
            )
            return handler

        return register


def read_query(model: type[BaseModel]) -> BaseModel:
    """The query string as `model`; a value it refuses is a 400 that names the parameter."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        reason = first["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"{name}: {reason}" if name else reason) from exc


def write(result: Any, status: int, writers: dict[int, TypeAdapter[Any]]) -> Any:
    """The view's result as its declared answer: JSON written by the model of its status."""
    if isinstance(result, Response):
        return result
    headers: dict[str, str] = {}
    if isinstance(result, tuple):
        result, extra = result
        status, headers = (extra, {}) if isinstance(extra, int) else (status, extra)
    writer = writers[status]
    try:
        value = writer.validate_python(result)
    except ValidationError as exc:  # the view's fault, not the request's: a 500, never a 400
        raise TypeError(f"an answer its model cannot write: {exc}") from exc
    response = jsonify(writer.dump_python(value, mode="json", by_alias=True))
    response.status_code = status
    response.headers.update(headers)
    return response
