"""The per-process memory of refused API keys (defect 6): short-lived, bounded, and one lookup per key at a time."""

from __future__ import annotations

import asyncio

from app.auth.bad_keys import BadKeyCache
from app.auth.keys import digest


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class TestBadKeyCache:
    def test_a_bad_key_is_remembered_for_the_ttl_only(self) -> None:
        clock = Clock()
        cache = BadKeyCache(ttl_seconds=30, max_entries=10, clock=clock)
        cache.add(digest("vg_bad"))
        assert cache.is_bad(digest("vg_bad"))
        assert not cache.is_bad(digest("vg_other"))
        clock.now += 30
        assert not cache.is_bad(digest("vg_bad"))

    def test_size_is_bounded_oldest_first(self) -> None:
        cache = BadKeyCache(ttl_seconds=30, max_entries=3, clock=Clock())
        for n in range(5):
            cache.add(digest(f"vg_bad{n}"))
        assert len(cache) == 3
        assert not cache.is_bad(digest("vg_bad0")) and cache.is_bad(digest("vg_bad4"))

    def test_clear_and_a_zero_ttl(self) -> None:
        cache = BadKeyCache(ttl_seconds=30, max_entries=10, clock=Clock())
        cache.add(digest("vg_bad"))
        cache.clear()
        assert not cache.is_bad(digest("vg_bad"))
        off = BadKeyCache(ttl_seconds=0, max_entries=10, clock=Clock())
        off.add(digest("vg_bad"))
        assert not off.is_bad(digest("vg_bad"))

    async def test_concurrent_requests_for_one_key_wait_for_the_lookup_in_flight(self) -> None:
        cache = BadKeyCache(ttl_seconds=30, max_entries=10, clock=Clock())
        key = digest("vg_bad")
        lookups = 0

        async def request() -> bool:
            nonlocal lookups
            async with cache.lookup(key) as known_bad:
                if known_bad:
                    return False
                lookups += 1
                await asyncio.sleep(0.01)  # the database round trip
                cache.add(key)
                return False

        await asyncio.gather(*(request() for _ in range(50)))
        assert lookups == 1

    async def test_a_good_key_only_waits_for_the_one_lookup_in_flight(self) -> None:
        cache = BadKeyCache(ttl_seconds=30, max_entries=10, clock=Clock())
        key = digest("vg_good")
        lookups = 0

        async def request() -> None:
            nonlocal lookups
            async with cache.lookup(key) as known_bad:
                assert not known_bad
                lookups += 1
                await asyncio.sleep(0.01)

        await asyncio.gather(*(request() for _ in range(20)))
        assert lookups == 20
