"""The simulator knobs the benchmarks and the soak lean on: duplicates at a rate, and a burst on demand."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

Factory = Callable[..., Any]
Poll = Callable[..., Awaitable[dict[str, Any]]]
Create = Callable[..., Awaitable[dict[str, Any]]]


async def settled_log(client: httpx.AsyncClient, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        data: list[dict[str, Any]] = (await client.get("/_sim/webhooks")).json()["data"]
        if len(data) >= count and all(d["status"] not in ("pending", "held") for d in data):
            return data
        assert time.monotonic() < deadline, f"deliveries did not settle: {data}"
        await asyncio.sleep(0.02)


class TestDuplicateProbability:
    async def test_probability_one_sends_every_delivery_twice_under_one_id(
        self, asgi_sim: Factory, receiver: Any, create: Create
    ) -> None:
        async with asgi_sim(webhook_url=receiver.url) as client:
            await client.patch("/_sim/faults", json={"webhook_duplicate_probability": 1.0})
            await create(client)
            first, second = await receiver.wait_for(2)
            assert first.headers["webhook-id"] == second.headers["webhook-id"]

    async def test_probability_zero_sends_once_and_a_rate_duplicates_some(
        self, asgi_sim: Factory, receiver: Any, create: Create
    ) -> None:
        async with asgi_sim(webhook_url=receiver.url, render_seconds=0) as client:
            await create(client)
            log = await settled_log(client, 1)
            assert len(log) == 1
            await client.patch("/_sim/faults", json={"webhook_duplicate_probability": 0.5})
            for _ in range(20):
                await create(client)
            # 20 real renders: generous on a machine the rest of the suite loads (a 10 s bound flaked there).
            log = await settled_log(client, 21, timeout=90)
            copies = Counter(Counter(d["webhook_id"] for d in log[1:]).values())
            # 20 events at p=0.5: all-or-nothing has probability 2 * 2**-20.
            assert copies[1] > 0 and copies[2] > 0
            assert sum(n * k for n, k in copies.items()) == len(log) - 1

    async def test_probability_is_validated(self, asgi_sim: Factory) -> None:
        async with asgi_sim() as client:
            response = await client.patch("/_sim/faults", json={"webhook_duplicate_probability": 1.5})
            assert response.status_code == 400


class TestFinishRenders:
    async def test_videos_held_in_progress_complete_within_the_window_in_creation_order(
        self, asgi_sim: Factory, create: Create, poll: Poll
    ) -> None:
        async with asgi_sim(render_seconds=3600) as client:
            videos = [await create(client) for _ in range(3)]
            deadline = time.monotonic() + 10
            while (await client.get("/_sim/stats")).json()["renders_pending"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert {(await client.get(f"/v1/videos/{v['id']}")).json()["status"] for v in videos} == {"in_progress"}
            released = await client.post("/_sim/finish-renders", json={"over_seconds": 0.6})
            assert released.json() == {"released": 3}
            started = time.monotonic()
            done = [await poll(client, v["id"], timeout=5) for v in videos]
            assert time.monotonic() - started < 3
            assert [v["status"] for v in done] == ["completed"] * 3
            assert [v["completed_at"] for v in done] == sorted(v["completed_at"] for v in done)

    async def test_bad_window_is_refused(self, asgi_sim: Factory) -> None:
        async with asgi_sim() as client:
            response = await client.post("/_sim/finish-renders", json={"over_seconds": -1})
            assert response.status_code == 400
            assert response.json()["error"]["param"] == "over_seconds"
