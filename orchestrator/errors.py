"""The domain's errors: one shallow tree, mapped to HTTP only in web/errors.py.

AppError
├── ConfigError          bad configuration at start-up
├── InvalidRequest       the input breaks a rule of the contract
├── Unauthorized         no valid identity
├── Forbidden            the plan does not allow it
├── NotFound             missing, or not the caller's
├── OutOfCredits         no credit left for a prompt
├── Conflict             state forbids it (a run in progress, a run already over)
├── IdempotencyMismatch  an Idempotency-Key reused with another body
├── RateLimited          too many prompts in a window
│   └── TooManyRuns      the user's cap of runs in progress is reached
├── QueueUnavailable     the broker cannot be reached
├── ProviderError        every LLM provider failed
└── SandboxError         the sandbox failed outside a tool call
"""

from __future__ import annotations


class AppError(Exception):
    """Base of every error the product raises on purpose."""

    message = "Something went wrong"

    def __init__(self, message: str | None = None, **fields: object) -> None:
        self.message = message or self.message
        self.fields = fields
        super().__init__(self.message)


class ConfigError(AppError):
    """The environment describes a configuration that cannot work."""


class InvalidRequest(AppError):
    """The request breaks a rule of the contract."""

    message = "Invalid request body"


class Unauthorized(AppError):
    """No valid identity came with the request."""

    message = "Unauthorized"


class Forbidden(AppError):
    """The caller's plan does not allow this."""

    message = "Forbidden"


class NotFound(AppError):
    """The thing does not exist, or is not the caller's."""

    message = "Not found"


class OutOfCredits(AppError):
    """The caller has no credit left for a prompt."""

    message = "You have run out of credits"


class Conflict(AppError):
    """The current state forbids the action."""


class IdempotencyMismatch(AppError):
    """An Idempotency-Key came back with a different body."""

    message = "Idempotency-Key reused with a different body"


class RateLimited(AppError):
    """Too many prompts in the current window."""

    message = "Too many requests, slow down"

    def __init__(self, retry_after: int) -> None:
        super().__init__(None)
        self.retry_after = retry_after


class TooManyRuns(RateLimited):
    """MAX_RUNS_PER_USER runs of this user are already PENDING or STREAMING."""

    def __init__(self, cap: int, retry_after: int = 10) -> None:
        super().__init__(retry_after)
        self.message = (
            f"You already have {cap} {'run' if cap == 1 else 'runs'} in progress, the most "
            "allowed at once; wait for one to finish (or stop one) and send again"
        )


class QueueUnavailable(AppError):
    """The broker could not take the run; nothing was stored."""

    message = "The generation queue is unavailable, please try again shortly"


class ProviderError(AppError):
    """Every configured LLM provider failed for this step."""

    message = "The AI service is unavailable right now. Please try again in a moment."


class SandboxError(AppError):
    """The sandbox could not be created or used."""

    message = "The sandbox could not be started"
