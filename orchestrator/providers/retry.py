"""Which provider failures are worth retrying, and how long to wait before the next attempt."""

from __future__ import annotations

import email.utils
import random
import re
import time
from typing import Any

import openai
from tenacity import RetryCallState


class LLMReadTimeout(Exception):
    """No chunk arrived within LLM_READ_TIMEOUT seconds."""


class IncompleteStream(Exception):
    """The stream ended without a finish reason: the connection was cut."""


# How providers word "the prompt is too long" when they send no `context_length_exceeded` code.
_TOO_LONG = re.compile(
    r"context[ _-]?(length|window)|maximum context|prompt is too long|too many (input )?tokens"
    r"|reduce the length|input is too long|exceeds the (model's )?(max|context)",
    re.IGNORECASE,
)


def is_context_overflow(exc: BaseException) -> bool:
    """The provider refused the request as longer than its context: ask again smaller."""
    if not isinstance(exc, openai.APIError):
        return False
    if isinstance(exc, openai.APIStatusError) and exc.status_code not in (400, 413, 422):
        return False
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {"message": str(exc.body)}
    inner = body.get("error")
    error: dict[str, Any] = inner if isinstance(inner, dict) else body
    if "context_length_exceeded" in (error.get("code"), getattr(exc, "code", None)):
        return True
    return bool(_TOO_LONG.search(f"{error.get('message') or ''} {exc.message}"))


def is_transient(exc: BaseException) -> bool:
    if is_context_overflow(exc):
        return False  # the same request would fail the same way: never retried as it is
    if isinstance(exc, LLMReadTimeout | IncompleteStream | openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, openai.APIError)


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's Retry-After (or retry-after-ms), when it sent one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class BackoffWait:
    """Exponential backoff with full jitter capped at `cap`; Retry-After wins, up to `retry_cap`."""

    def __init__(self, *, base: float = 0.5, cap: float = 8.0, retry_cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.retry_cap = retry_cap

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = retry_after_seconds(exc)
        if hinted is not None:
            return min(hinted, self.retry_cap)
        ceiling = min(self.cap, self.base * (2 ** (state.attempt_number - 1)))
        return random.uniform(ceiling / 2, ceiling)
