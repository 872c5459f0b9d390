"""RS256 keys from AUTH_JWKS_URL, refetched at most once per interval whatever tokens arrive.

A token names its key by `kid`. An unknown kid may be a key the provider just rotated in, so it
earns a refetch of the key set, but only when the last fetch (successful or not) is at least
`refetch_interval` old: otherwise anyone could make every request cost us a round trip to the
provider (or a time-out, while it is down). Known keys are served from memory; the whole set is
refreshed after `max_age` on the next token.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import jwt

from orchestrator.errors import Unauthorized

log = logging.getLogger(__name__)


class JwksKeys:
    """One JWKS URL's signing keys by kid, with a floor on the time between fetches."""

    def __init__(
        self,
        url: str,
        *,
        refetch_interval: float = 30.0,
        max_age: float = 300.0,
        timeout: float = 5.0,
    ) -> None:
        # Used as a fetcher only: the cache and its cool-down are ours, the same in every PyJWT.
        self._fetcher = jwt.PyJWKClient(url, cache_jwk_set=False, cache_keys=False, timeout=timeout)
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self.fetches = 0
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: Any) -> Any:
        """The public key for `kid`, or Unauthorized."""
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("Invalid or expired token")
        with self._lock:  # one fetch at a time: a burst of new kids waits for the same answer
            now = time.monotonic()
            age = None if self._fetched_at is None else now - self._fetched_at
            wanted = kid not in self._keys or age is None or age > self.max_age
            if wanted and (age is None or age >= self.refetch_interval):
                self._fetch(now)
            found = self._keys.get(kid)
        if found is None:
            raise Unauthorized("Invalid or expired token")
        return found

    def _fetch(self, now: float) -> None:
        self._fetched_at = now
        self.fetches += 1
        try:
            keys = self._fetcher.get_signing_keys(refresh=True)
        except jwt.PyJWTError:
            log.warning("could not fetch the JWKS; keeping the %d keys known", len(self._keys))
            return
        self._keys = {k.key_id: k.key for k in keys if k.key_id}
