"""A private repository's token on its way to the worker: in Redis, for minutes, read once.

Never in the database, a task's arguments (the broker keeps those) or a log line.
"""

from __future__ import annotations

import contextlib

import redis

KEY = "appforge:import-token:{}"


def hand_over(client: redis.Redis, import_id: str, token: str, ttl: int) -> None:
    client.set(KEY.format(import_id), token, ex=max(ttl, 1))


def take(client: redis.Redis, import_id: str) -> str | None:
    """The token, removed as it is read (GETDEL): a second reader finds nothing."""
    value = client.getdel(KEY.format(import_id))
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def discard_quietly(client: redis.Redis, import_id: str) -> None:
    """Remove it if Redis answers; otherwise its expiry does."""
    with contextlib.suppress(redis.RedisError):
        client.delete(KEY.format(import_id))
