"""The per-process memory of API keys, so most requests cost no key query: good keys for at most a second,
refused keys for longer.

Keys are remembered by their SHA-256 digest (never the key), at most `key_cache_entries` of each kind, the
oldest forgotten first.

- A good key's caller and key rows are remembered for `good_key_cache_seconds`, at most 1 s (the setting
  refuses more). A revocation, an expiry, a disabled caller or a new rate limit made anywhere (another replica,
  the CLI, SQL) therefore applies on every replica within 1 s; made through this process's admin API, at once
  (the admin routes `forget_good_keys()`). The request-rate counter is never cached: it is counted in Postgres
  on every request, so the rate stays exact across replicas.
- A refused key is remembered for `bad_key_cache_seconds` (30 s), so a flood of one bad key costs no query. A
  key remembered as bad can become good only if it was presented before it was created: keys the gateway
  makes are random, so in practice this concerns keys given explicitly (the dev key). Creating a key through
  the admin API clears this process's memory at once; a key created elsewhere is accepted here once the TTL
  has passed.

Concurrent requests with the same unknown key share one lookup: a request that finds another lookup of its
key in flight waits for that one (only that one), then answers from memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from app.auth.service import Principal

Clock = Callable[[], float]
V = TypeVar("V")
# The longest a good key is trusted without asking the database: the bound on how late a revocation applies.
MAX_GOOD_KEY_SECONDS: Final = 1.0


@dataclass(frozen=True)
class Recalled:
    """What memory says of a key: refused (answer 401), a principal (let it in), or neither (look it up)."""

    refused: bool = False
    principal: Principal | None = None


class _Expiring(Generic[V]):
    """Values that expire `ttl_seconds` after they were stored; at most `max_entries`, the oldest dropped."""

    def __init__(self, *, ttl_seconds: float, max_entries: int, clock: Clock) -> None:
        self._ttl_seconds = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, value = found
        if expires_at <= self._clock():
            del self._entries[key]
            return None
        return value

    def put(self, key: bytes, value: V) -> None:
        if self._ttl_seconds <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + self._ttl_seconds, value)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: bytes) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


class KeyCache:
    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int,
        good_ttl_seconds: float = 0.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if good_ttl_seconds > MAX_GOOD_KEY_SECONDS:
            raise ValueError(f"good keys may be remembered for at most {MAX_GOOD_KEY_SECONDS} s")
        self._bad = _Expiring[bool](ttl_seconds=ttl_seconds, max_entries=max_entries, clock=clock)
        self._good = _Expiring[Principal](ttl_seconds=good_ttl_seconds, max_entries=max_entries, clock=clock)
        self._in_flight: dict[bytes, asyncio.Event] = {}

    @property
    def refused_count(self) -> int:
        """How many refused keys are remembered."""
        return len(self._bad)

    @property
    def good_count(self) -> int:
        """How many good keys are remembered (none older than `MAX_GOOD_KEY_SECONDS`)."""
        return len(self._good)

    def is_bad(self, key_digest: bytes) -> bool:
        return self._bad.get(key_digest) is not None

    def add(self, key_digest: bytes) -> None:
        """Remember a refused key."""
        self._good.pop(key_digest)
        self._bad.put(key_digest, True)

    def remember(self, key_digest: bytes, principal: Principal) -> None:
        """Remember a good key's caller and key rows (for at most `MAX_GOOD_KEY_SECONDS`)."""
        self._good.put(key_digest, principal)

    def forget_refused_keys(self) -> None:
        """Forget the refused keys (a key was just created)."""
        self._bad.clear()

    def forget_good_keys(self) -> None:
        """Forget the good keys (a key was just revoked or its limit changed): the next request looks it up."""
        self._good.clear()

    def _recall(self, key_digest: bytes) -> Recalled | None:
        if self.is_bad(key_digest):
            return Recalled(refused=True)
        principal = self._good.get(key_digest)
        return None if principal is None else Recalled(principal=principal)

    @asynccontextmanager
    async def lookup(self, key_digest: bytes) -> AsyncIterator[Recalled]:
        """What memory says of the key. Neither refused nor known: look it up (then `add` or `remember` it);
        requests for the same key that arrive meanwhile wait for this lookup instead of making their own."""
        recalled = self._recall(key_digest)
        if recalled is not None:
            yield recalled
            return
        running = self._in_flight.get(key_digest)
        if running is not None:
            await running.wait()
            recalled = self._recall(key_digest)
            if recalled is not None:
                yield recalled
                return
        if key_digest in self._in_flight:
            # Another waiter woke first and started the next lookup of this key: run beside it.
            yield Recalled()
            return
        done = asyncio.Event()
        self._in_flight[key_digest] = done
        try:
            yield Recalled()
        finally:
            del self._in_flight[key_digest]
            done.set()
