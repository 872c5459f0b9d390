"""Small helpers every blueprint uses: the JSON body, and a unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from models import transaction
from orchestrator.errors import InvalidRequest
from web.state import state

M = TypeVar("M", bound=BaseModel)


def json_body() -> Any:
    body = request.get_json(silent=True, cache=True)
    if body is None:
        raise InvalidRequest("Request body must be valid JSON")
    return body


def parse(model: type[M], body: Any | None = None) -> M:
    body = json_body() if body is None else body
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    return model.model_validate(body)


@contextmanager
def unit_of_work() -> Iterator[Session]:
    with transaction(state().db) as session:
        yield session
