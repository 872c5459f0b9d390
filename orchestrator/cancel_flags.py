"""Where a cancel is said in Redis: the durable flag a worker reads after every reconnect, and
the channel that wakes it at once (pub/sub loses what is published while it is away).

Apart from the runs, so that what only reads a flag (the metrics) does not import them."""

from __future__ import annotations

FLAG_TTL_SECONDS = 24 * 3600
CANCEL_CHANNEL = "runs:cancel"


def flag_key(message_id: str) -> str:
    return f"run:{message_id}:cancel"
