"""A circuit breaker per provider, kept in Redis so that every worker process shares it.

Closed: calls go through; each failed attempt (a time-out, a cut, a 5xx/429, a rejected key)
counts, and a success clears the count. `failures` failed attempts within `window` seconds open
the breaker: for `cooldown` seconds every run skips that provider (its fallback answers at once).
Then the breaker is half-open: the first run to take the probe slot (`SET NX`, inside one Lua
script) tries the provider once, without retries; its success closes the breaker, its failure
opens it for another cool-down. Other runs keep skipping the provider while the probe is out.

Redis is never allowed to hold a run up: the breaker has its own client with short time-outs,
and when Redis fails it answers "closed" (runs behave as without a breaker) and leaves Redis
alone for a few seconds before it asks again.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai
import redis

from orchestrator.providers.retry import is_transient

log = logging.getLogger(__name__)

KEY_PREFIX = "appforge:breaker"

# KEYS: open, tripped, probe. ARGV: probe token, probe ttl (ms).
# 0 = open (skip), 1 = closed (go), 2 = half-open and this caller holds the probe slot.
_ALLOW = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
if redis.call('exists', KEYS[2]) == 0 then return 1 end
if redis.call('set', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
return 0
"""

# KEYS: fails, open, tripped, probe. ARGV: threshold, window (ms), cooldown (ms), tripped ttl (ms).
# Returns 1 when this failure (re)opened the breaker.
_FAIL = """
if redis.call('exists', KEYS[3]) == 1 then
  if redis.call('exists', KEYS[2]) == 1 then return 0 end
  redis.call('set', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('pexpire', KEYS[3], ARGV[4])
  redis.call('del', KEYS[4])
  return 1
end
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('pexpire', KEYS[1], ARGV[2]) end
if n >= tonumber(ARGV[1]) then
  redis.call('set', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('set', KEYS[3], '1', 'PX', ARGV[4])
  redis.call('del', KEYS[1], KEYS[4])
  return 1
end
return 0
"""


class Gate(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    PROBE = "probe"


def counts_against(exc: BaseException) -> bool:
    """Failures that say the provider is down for us (not a request it rightly refused)."""
    if isinstance(exc, openai.APIStatusError) and exc.status_code in (401, 403):
        return True
    return is_transient(exc)


@dataclass(frozen=True)
class BreakerConfig:
    failures: int = 5
    window: float = 60.0
    cooldown: float = 30.0
    # How long a probe may hold the slot before another run may probe (a dead worker's probe).
    probe_ttl: float = 120.0

    @property
    def enabled(self) -> bool:
        return self.failures > 0


@dataclass
class Breaker:
    """The shared breaker of every provider of one queue (one worker pool)."""

    client: redis.Redis
    namespace: str
    config: BreakerConfig = field(default_factory=BreakerConfig)
    # After a Redis error, seconds during which the breaker answers "closed" without asking.
    redis_backoff: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _quiet_until: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._allow = self.client.register_script(_ALLOW)
        self._fail = self.client.register_script(_FAIL)

    def keys(self, provider: str) -> dict[str, str]:
        base = f"{KEY_PREFIX}:{self.namespace}:{provider}"
        return {k: f"{base}:{k}" for k in ("fails", "open", "tripped", "probe")}

    def allow(self, provider: str) -> Gate:
        if not self.config.enabled:
            return Gate.CLOSED
        k = self.keys(provider)
        answer = self._ask(
            lambda: self._allow(
                keys=[k["open"], k["tripped"], k["probe"]],
                args=[str(time.time()), _ms(self.config.probe_ttl)],
            )
        )
        if answer is None:
            return Gate.CLOSED
        return {0: Gate.OPEN, 1: Gate.CLOSED, 2: Gate.PROBE}[int(answer)]

    def failure(self, provider: str) -> bool:
        """Counts one failed attempt; True when it opened the breaker."""
        if not self.config.enabled:
            return False
        k = self.keys(provider)
        cfg = self.config
        opened = self._ask(
            lambda: self._fail(
                keys=[k["fails"], k["open"], k["tripped"], k["probe"]],
                args=[
                    cfg.failures,
                    _ms(cfg.window),
                    _ms(cfg.cooldown),
                    _ms(max(cfg.window, cfg.cooldown) * 20),
                ],
            )
        )
        if opened:
            log.warning("circuit breaker for provider %s is open for %.0fs", provider, cfg.cooldown)
        return bool(opened)

    def success(self, provider: str) -> None:
        if not self.config.enabled:
            return
        k = self.keys(provider)
        closed = self._ask(lambda: self.client.delete(*k.values()))
        if closed and int(closed) > 1:
            log.info("circuit breaker for provider %s is closed again", provider)

    def is_open(self, provider: str) -> bool:
        """For metrics: 1 while runs skip the provider (open, or half-open with a probe out)."""
        k = self.keys(provider)
        answer = self._ask(lambda: self.client.exists(k["open"], k["probe"]))
        return bool(answer)

    def _ask(self, call: Callable[[], Any]) -> Any:
        if self.clock() < self._quiet_until:
            return None
        try:
            return call()
        except (redis.RedisError, OSError) as exc:
            with self._lock:
                if self.clock() >= self._quiet_until:
                    log.warning(
                        "circuit breaker: Redis unavailable (%s); runs go on without a breaker "
                        "for %.0fs",
                        exc,
                        self.redis_backoff,
                    )
                self._quiet_until = self.clock() + self.redis_backoff
            return None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def breaker_client(redis_url: str) -> redis.Redis:
    """Short time-outs: a slow Redis costs a run at most a fraction of a second, once."""
    return redis.Redis.from_url(
        redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, retry_on_timeout=False
    )
