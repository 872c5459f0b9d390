"""Small helpers every blueprint uses: the JSON body, and a unit of work."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import g, request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from models import transaction
from orchestrator.errors import InvalidRequest
from web.state import state

M = TypeVar("M", bound=BaseModel)

# Far deeper than any real body; deep enough trees would exhaust the stack of every later step
# (pydantic, the JSON column, jsonify), so they are refused at the door.
MAX_DEPTH = 64


def json_body() -> Any:
    """The request's JSON value; 400 for anything else, so SQLite and PostgreSQL see the same.
    Parsed once per request: the view may read the raw value after its model did."""
    if "json_body" in g:
        return g.json_body
    if not request.is_json:
        raise InvalidRequest("Request body must be valid JSON")
    try:
        body = json.loads(
            request.get_data(cache=True), parse_constant=_no_constant, parse_float=_finite
        )
    except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands of levels
        raise InvalidRequest("Request body must be valid JSON") from exc
    check_storable(body)
    g.json_body = body
    return body


def parse(model: type[M], body: Any | None = None) -> M:
    body = json_body() if body is None else body
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    return model.model_validate(body)


def storable(text: str) -> bool:
    """Whether PostgreSQL and SQLite can both store `text`: no NUL, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_storable(value: Any) -> None:
    """Refuse a JSON value nested deeper than MAX_DEPTH or holding text no database can store."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:  # a loop, not recursion: the value may be as deep as the parser allowed
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"Request body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if not storable(text):
        raise InvalidRequest("Text must not contain NUL characters or unpaired surrogates")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as infinity, which JSON cannot carry back
        raise ValueError(f"{text} is out of range")
    return value


@contextmanager
def unit_of_work() -> Iterator[Session]:
    with transaction(state().db) as session:
        yield session
