"""The one place errors become HTTP: a status code and a `{"error": "<sentence>"}` body."""

from __future__ import annotations

import logging
from typing import Literal

import redis
from flask import Flask, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from orchestrator import errors
from orchestrator.contract import Uuid

log = logging.getLogger(__name__)

STATUS: dict[type[errors.AppError], int] = {
    errors.InvalidRequest: 400,
    errors.Unauthorized: 401,
    errors.OutOfCredits: 402,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.IdempotencyMismatch: 422,
    errors.RateLimited: 429,
    errors.QueueUnavailable: 503,
}


class ErrorBody(BaseModel):
    """Every failure: a sentence, plus the fields some errors add (DESIGN section 4)."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(min_length=1)


class RunInProgress(ErrorBody):
    """A run of the conversation is in progress: the assistant message that runs."""

    model_config = ConfigDict(extra="forbid")
    error: Literal["A message is already being processed"]
    messageId: Uuid | None


def error_response(status: int, message: str, **fields: object) -> tuple[Response, int]:
    return jsonify({"error": message, **fields}), status


def describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    # A rule across fields (the prompt's length) is a sentence of its own.
    reason = first.get("msg", "invalid value").removeprefix("Value error, ")
    return (
        f"Invalid request body: {where}: {reason}" if where else f"Invalid request body: {reason}"
    )


def register(app: Flask) -> None:
    @app.errorhandler(errors.AppError)
    def app_error(exc: errors.AppError) -> tuple[Response, int]:
        status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
        response, code = error_response(status, exc.message, **exc.fields)
        if isinstance(exc, errors.RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response, code

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError) -> tuple[Response, int]:
        return error_response(400, describe(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        messages = {
            404: "Not found",
            405: "Method not allowed",
            413: "Request body is larger than 1 MiB",
        }
        code = exc.code or 500
        response, status = error_response(code, messages.get(code, exc.description or exc.name))
        # Keep the headers the status calls for, such as the Allow of a 405.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(OperationalError)
    def database_down(exc: OperationalError) -> tuple[Response, int]:
        log.warning("database unavailable: %s", exc)
        return error_response(503, "The database is unavailable, please try again shortly")

    @app.errorhandler(redis.RedisError)
    def redis_down(exc: redis.RedisError) -> tuple[Response, int]:
        # Connection refused or lost, a time-out, or no free connection in the pool in time.
        log.warning("Redis unavailable: %s: %s", type(exc).__name__, exc)
        return error_response(503, "The event store is unavailable, please try again shortly")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "Internal server error")
