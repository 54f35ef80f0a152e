"""The memory of recently refused API keys, per process, so a flood of one bad key costs no database query.

Only refusals are remembered, by the key's SHA-256 digest (never the key), for `bad_key_cache_seconds` (30 s),
at most `bad_key_cache_entries` of them, the oldest forgotten first. Good keys are never cached: every request
with one is still checked against the database, so a revocation or an expiry applies to the next request.

A key remembered as bad can become good only if it existed before it was created: keys the gateway makes are
random and cannot have been presented earlier, so in practice this concerns keys given explicitly (the dev key).
Creating a key through the admin API clears this process's memory at once; a key created elsewhere (the CLI,
another replica) is accepted by this process once the TTL has passed.

Concurrent requests with the same key share one lookup: a request that finds another lookup of its key in
flight waits for that one (only that one) and answers 401 from memory if it found the key bad. A good key's
requests thus wait at most for one short transaction, which they would mostly have waited for anyway on the
key's rate-counter row lock.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

Clock = Callable[[], float]


class BadKeyCache:
    def __init__(self, *, ttl_seconds: float, max_entries: int, clock: Clock = time.monotonic) -> None:
        self._ttl_seconds = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        # digest -> when it stops being known bad; oldest insertion first.
        self._expires_at: OrderedDict[bytes, float] = OrderedDict()
        self._in_flight: dict[bytes, asyncio.Event] = {}

    def __len__(self) -> int:
        return len(self._expires_at)

    def is_bad(self, key_digest: bytes) -> bool:
        expires_at = self._expires_at.get(key_digest)
        if expires_at is None:
            return False
        if expires_at <= self._clock():
            del self._expires_at[key_digest]
            return False
        return True

    def add(self, key_digest: bytes) -> None:
        if self._ttl_seconds <= 0:
            return
        self._expires_at.pop(key_digest, None)
        self._expires_at[key_digest] = self._clock() + self._ttl_seconds
        while len(self._expires_at) > self._max_entries:
            self._expires_at.popitem(last=False)

    def clear(self) -> None:
        self._expires_at.clear()

    @asynccontextmanager
    async def lookup(self, key_digest: bytes) -> AsyncIterator[bool]:
        """True: the key is known bad, answer 401 without a query. False: look it up (and `add` it if bad);
        requests for the same key that arrive meanwhile wait for this lookup instead of making their own."""
        running = self._in_flight.get(key_digest)
        if running is not None:
            await running.wait()
        if self.is_bad(key_digest):
            yield True
            return
        if key_digest in self._in_flight:
            # Another waiter woke first and started the next lookup of this (good) key: run beside it.
            yield False
            return
        done = asyncio.Event()
        self._in_flight[key_digest] = done
        try:
            yield False
        finally:
            del self._in_flight[key_digest]
            done.set()
