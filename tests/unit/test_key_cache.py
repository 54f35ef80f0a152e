"""The per-process memory of API keys: refused ones (defect 6) and good ones (at most 1 s), bounded, one lookup
per key at a time."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.auth.key_cache import KeyCache
from app.auth.keys import digest
from app.auth.service import Principal
from app.models import ApiKey, Caller


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class TestKeyCache:
    def test_a_bad_key_is_remembered_for_the_ttl_only(self) -> None:
        clock = Clock()
        cache = KeyCache(ttl_seconds=30, max_entries=10, clock=clock)
        cache.add(digest("vg_bad"))
        assert cache.is_bad(digest("vg_bad"))
        assert not cache.is_bad(digest("vg_other"))
        clock.now += 30
        assert not cache.is_bad(digest("vg_bad"))

    def test_size_is_bounded_oldest_first(self) -> None:
        cache = KeyCache(ttl_seconds=30, max_entries=3, clock=Clock())
        for n in range(5):
            cache.add(digest(f"vg_bad{n}"))
        assert (cache.refused_count, cache.good_count) == (3, 0)
        assert not cache.is_bad(digest("vg_bad0")) and cache.is_bad(digest("vg_bad4"))

    def test_clear_and_a_zero_ttl(self) -> None:
        cache = KeyCache(ttl_seconds=30, max_entries=10, clock=Clock())
        cache.add(digest("vg_bad"))
        cache.forget_refused_keys()
        assert not cache.is_bad(digest("vg_bad"))
        off = KeyCache(ttl_seconds=0, max_entries=10, clock=Clock())
        off.add(digest("vg_bad"))
        assert not off.is_bad(digest("vg_bad"))

    async def test_concurrent_requests_for_one_key_wait_for_the_lookup_in_flight(self) -> None:
        cache = KeyCache(ttl_seconds=30, max_entries=10, clock=Clock())
        key = digest("vg_bad")
        lookups = 0

        async def request() -> bool:
            nonlocal lookups
            async with cache.lookup(key) as recalled:
                if recalled.refused:
                    return False
                lookups += 1
                await asyncio.sleep(0.01)  # the database round trip
                cache.add(key)
                return False

        await asyncio.gather(*(request() for _ in range(50)))
        assert lookups == 1

    async def test_a_good_key_only_waits_for_the_one_lookup_in_flight(self) -> None:
        cache = KeyCache(ttl_seconds=30, max_entries=10, clock=Clock())
        key = digest("vg_good")
        lookups = 0

        async def request() -> None:
            nonlocal lookups
            async with cache.lookup(key) as recalled:
                assert not recalled.refused
                lookups += 1
                await asyncio.sleep(0.01)

        await asyncio.gather(*(request() for _ in range(20)))
        assert lookups == 20


def principal(name: str) -> Principal:
    caller = Caller(id=uuid.uuid4(), name=name)
    return Principal(caller=caller, api_key=ApiKey(id=uuid.uuid4(), caller_id=caller.id, label=""))


class TestGoodKeys:
    async def test_a_good_key_is_trusted_for_its_ttl_then_looked_up_again(self) -> None:
        clock = Clock()
        cache = KeyCache(ttl_seconds=30, max_entries=10, good_ttl_seconds=1.0, clock=clock)
        known = principal("acme")
        cache.remember(digest("vg_good"), known)
        async with cache.lookup(digest("vg_good")) as recalled:
            assert recalled.principal is known and not recalled.refused
        clock.now += 0.999
        async with cache.lookup(digest("vg_good")) as recalled:
            assert recalled.principal is known
        clock.now += 0.001
        async with cache.lookup(digest("vg_good")) as recalled:
            assert recalled.principal is None and not recalled.refused

    def test_more_than_one_second_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"at most 1\.0 s"):
            KeyCache(ttl_seconds=30, max_entries=10, good_ttl_seconds=1.5)

    async def test_forgetting_good_keys_and_a_refusal_override_the_memory(self) -> None:
        cache = KeyCache(ttl_seconds=30, max_entries=10, good_ttl_seconds=1.0, clock=Clock())
        cache.remember(digest("vg_a"), principal("a"))
        cache.remember(digest("vg_b"), principal("b"))
        cache.forget_good_keys()
        async with cache.lookup(digest("vg_a")) as recalled:
            assert recalled.principal is None
        cache.remember(digest("vg_b"), principal("b"))
        cache.add(digest("vg_b"))  # refused since (e.g. looked up again after a revocation)
        async with cache.lookup(digest("vg_b")) as recalled:
            assert recalled.refused and recalled.principal is None

    async def test_waiters_on_a_lookup_take_its_good_answer_from_memory(self) -> None:
        cache = KeyCache(ttl_seconds=30, max_entries=10, good_ttl_seconds=1.0, clock=Clock())
        key = digest("vg_good")
        lookups = 0

        async def request() -> Principal:
            nonlocal lookups
            async with cache.lookup(key) as recalled:
                if recalled.principal is not None:
                    return recalled.principal
                lookups += 1
                await asyncio.sleep(0.01)
                found = principal("acme")
                cache.remember(key, found)
                return found

        answers = await asyncio.gather(*(request() for _ in range(20)))
        assert lookups == 1 and len({id(answer) for answer in answers}) == 1
