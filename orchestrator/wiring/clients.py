"""The Redis clients of a process, configured one way for the web and the workers."""

from __future__ import annotations

import redis

from orchestrator.settings import Settings


def redis_client(settings: Settings, *, max_connections: int = 200) -> redis.Redis:
    # A blocking pool: past its size, callers wait for a connection instead of failing.
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=max_connections,
        timeout=5,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)
