"""Which provider failures are worth retrying, and how long to wait before the next attempt."""

from __future__ import annotations

import email.utils
import random
import time

import openai
from tenacity import RetryCallState


class LLMReadTimeout(Exception):
    """No chunk arrived within LLM_READ_TIMEOUT seconds."""


class IncompleteStream(Exception):
    """The stream ended without a finish reason: the connection was cut."""


def is_transient(exc: BaseException) -> bool:
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
