"""Row 52: the spend budget and the concurrency cap are enforced before any upstream call, race-free."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from sqlalchemy import func, select, update

from app.core.db import Database
from app.models import Video
from tests.support.factories import MadeCaller, make_caller
from tests.support.limits import GatewayFactory, assert_error, create_video


async def videos_of(database: Database, caller: MadeCaller) -> int:
    async with database.sessionmaker() as session:
        return int((await session.execute(select(func.count()).where(Video.caller_id == caller.id))).scalar_one())


async def wait_until_terminal(client: httpx.AsyncClient, video_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = (await client.get(f"/v1/videos/{video_id}")).json()
        if body["status"] in ("completed", "failed"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{video_id} did not finish in {timeout}s")


class TestSpendBudget:
    async def test_over_budget_is_429_insufficient_quota_with_no_upstream_call(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        # sora-2 at $0.10/s: one 4 s render ($0.40) fits in $0.50, a second does not.
        async with limited_gateway(budget_usd_per_period=0.5) as gateway, gateway.client(caller.key) as client:
            assert (await create_video(client, seconds="4")).status_code == 200
            before = gateway.creates
            refused = await create_video(client, seconds="4")
            error = assert_error(refused, 429, "insufficient_quota", "insufficient_quota")
            assert "0.40" in error["message"]
            assert refused.headers["x-should-retry"] == "false"
            assert int(refused.headers["retry-after"]) >= 1
            assert gateway.creates == before
        assert await videos_of(database, caller) == 1

    async def test_concurrent_creates_at_the_budget_edge_never_overspend(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        # Exactly three 4 s sora-2 renders fit in $1.20 (with Decimal money; floats would admit two).
        async with limited_gateway(budget_usd_per_period=1.2) as gateway, gateway.client(caller.key) as client:
            responses = await asyncio.gather(*(create_video(client, f"boat {n}", seconds="4") for n in range(10)))
            statuses = sorted(response.status_code for response in responses)
            assert statuses == [200] * 3 + [429] * 7, [r.text for r in responses if r.status_code not in (200, 429)]
            assert gateway.creates == 3
        assert await videos_of(database, caller) == 3

    async def test_unknown_models_are_charged_the_highest_price(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        # A served model without a price: the default profile passes every model through (`["*"]`).
        # $1.00 covers 4 s of sora-2 ($0.40) but not 4 s at the highest price ($1.20).
        async with (
            limited_gateway(budget_usd_per_period=1.0, default_models=["*"]) as gateway,
            gateway.client(caller.key) as client,
        ):
            assert_error(await create_video(client, model="sora-9-unlisted", seconds="4"), 429, "insufficient_quota")
            assert gateway.creates == 0
            assert (await create_video(client, model="sora-2", seconds="4")).status_code == 200

    async def test_moderation_blocked_renders_give_their_reservation_back(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        async with limited_gateway(budget_usd_per_period=0.4) as gateway, gateway.client(caller.key) as client:
            blocked = (await create_video(client, "something forbidden", seconds="4")).json()
            # While in flight the render is reserved at full price.
            assert_error(await create_video(client, seconds="4"), 429, "insufficient_quota")
            finished = await wait_until_terminal(client, blocked["id"])
            assert finished["error"]["code"] == "moderation_blocked"
            assert (await create_video(client, seconds="4")).status_code == 200
            assert gateway.creates == 2

    async def test_remix_is_charged_like_a_create(self, limited_gateway: GatewayFactory, database: Database) -> None:
        caller = await make_caller(database)
        async with limited_gateway(budget_usd_per_period=0.8) as gateway, gateway.client(caller.key) as client:
            source = (await create_video(client, seconds="4")).json()
            await wait_until_terminal(client, source["id"])
            assert (
                await client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "at dusk"})
            ).status_code == 200
            before = gateway.creates
            refused = await client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "at dawn"})
            assert_error(refused, 429, "insufficient_quota")
            assert gateway.creates == before


class TestConcurrentRenders:
    async def test_renders_in_flight_are_capped_per_caller(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        async with limited_gateway(max_concurrent_renders=2) as gateway, gateway.client(caller.key) as client:
            first = (await create_video(client)).json()
            assert (await create_video(client)).status_code == 200
            before = gateway.creates
            refused = await create_video(client)
            assert_error(refused, 429, "concurrent_renders_exceeded", "rate_limit_error")
            assert refused.headers["retry-after"] == "30"
            assert gateway.creates == before
            # Once one has finished (as the worker or a poll would record it), there is room again.
            async with database.sessionmaker.begin() as session:
                await session.execute(update(Video).where(Video.id == first["id"]).values(status="completed"))
            assert (await create_video(client)).status_code == 200

    async def test_the_cap_holds_under_concurrent_creates(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        async with limited_gateway(max_concurrent_renders=4) as gateway, gateway.client(caller.key) as client:
            responses = await asyncio.gather(*(create_video(client, f"kite {n}") for n in range(8)))
            assert sorted(r.status_code for r in responses) == [200] * 4 + [429] * 4
            assert gateway.creates == 4
