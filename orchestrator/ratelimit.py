"""Per-user rate limiting of prompts: a sliding window kept in Redis.

Each user has a sorted set of the times of their accepted prompts. One Lua script drops the
entries older than the window, counts the rest and, under the limit, records this prompt, so
concurrent web processes can never let more than `limit` through in any window. A refused
prompt is not recorded: hammering does not extend the wait.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable

import redis

from orchestrator.errors import RateLimited

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0

# KEYS[1]: the user's log. ARGV: now (ms), window (ms), limit, a unique member.
# Returns 0 when the prompt is let through, else the milliseconds until a slot frees.
SLIDING_WINDOW = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


def key(user_id: str) -> str:
    return f"ratelimit:prompts:{user_id}"


def check(
    client: redis.Redis,
    user_id: str,
    limit: int,
    *,
    window_seconds: float = WINDOW_SECONDS,
    clock: Callable[[], float] = time.time,
) -> str | None:
    """Count one prompt of `user_id`; RateLimited past `limit` per window (0 turns it off).

    Returns the slot taken (None when nothing was recorded): a prompt that is then not accepted
    (no credit, a run in progress, a replay...) gives it back with `release`, so only accepted
    prompts count. Fails open: when Redis cannot be reached the prompt goes through and a warning
    is logged, since refusing every prompt would turn a Redis blip into an outage of its own.
    """
    if limit <= 0:
        return None
    window_ms = max(1, int(window_seconds * 1000))
    slot = uuid.uuid4().hex
    try:
        wait_ms = int(
            client.register_script(SLIDING_WINDOW)(
                keys=[key(user_id)],
                args=[int(clock() * 1000), window_ms, limit, slot],
            )
        )
    except redis.RedisError as exc:
        log.warning("rate limit not checked for %s, Redis unavailable: %s", user_id, exc)
        return None
    if wait_ms > 0:
        raise RateLimited(retry_after=math.ceil(wait_ms / 1000))
    return slot


def release(client: redis.Redis, user_id: str, slot: str | None) -> None:
    """Gives back a slot `check` took for a prompt that was not accepted."""
    if slot is None:
        return
    try:
        client.zrem(key(user_id), slot)
    except redis.RedisError as exc:
        log.warning("rate limit slot of %s not given back, Redis unavailable: %s", user_id, exc)
