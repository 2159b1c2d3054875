"""API-key authentication: keys looked up by hash, cached for a few seconds at most."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from shared.domain.errors import Forbidden, Unauthorized
from shared.storage.keys import ApiKey, hash_key

HEADER = "x-cybernet-api-key"
MAX_CACHED = 10_000


class KeyLookup(Protocol):
    """Finds a key by its clear value (``shared.storage.keys.ApiKeyRepository``)."""

    async def find_by_clear(self, clear: str) -> ApiKey | None: ...


class KeyAuthenticator:
    """Turns the header value into the caller's key, or raises 401/403 errors.

    A looked-up key (or its absence) is cached by hash for ``ttl`` seconds, so a
    deactivation takes effect within ``ttl`` (``API_KEY_CACHE_SECONDS``).
    """

    def __init__(
        self, keys: KeyLookup, ttl: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.keys = keys
        self.ttl = ttl
        self.monotonic = monotonic
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def authenticate(self, clear: str | None) -> ApiKey:
        if not clear:
            raise Unauthorized(f"missing API key: send it in the {HEADER} header")
        key = await self._lookup(clear)
        if key is None:
            raise Unauthorized("unknown API key")
        if not key.active:
            raise Forbidden("API key is inactive")
        return key

    async def _lookup(self, clear: str) -> ApiKey | None:
        digest = hash_key(clear)
        now = self.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = await self.keys.find_by_clear(clear)
        if self.ttl > 0:
            if len(self._cache) >= MAX_CACHED:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
            self._cache[digest] = (now + self.ttl, key)
        return key
