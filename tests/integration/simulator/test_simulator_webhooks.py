"""Webhook delivery over real HTTP to a local receiver: signing, retries and the webhook fault knobs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from standardwebhooks import Webhook

Factory = Callable[..., Any]
Poll = Callable[..., Awaitable[dict[str, Any]]]
Create = Callable[..., Awaitable[dict[str, Any]]]


async def deliveries(client: httpx.AsyncClient, settled: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The simulator's delivery log, once `settled` entries are no longer pending or held."""
    deadline = time.monotonic() + timeout
    while True:
        data: list[dict[str, Any]] = (await client.get("/_sim/webhooks")).json()["data"]
        if sum(d["status"] not in ("pending", "held") for d in data) >= settled:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries did not settle: {data}")
        await asyncio.sleep(0.02)


class TestDelivery:
    async def test_completed_event_is_signed_and_verifiable(
        self, asgi_sim: Factory, receiver: Any, create: Create, webhook_secret: str
    ) -> None:
        async with asgi_sim(webhook_url=receiver.url) as client:
            video = await create(client)
            [hook] = await receiver.wait_for(1)
            event = Webhook(webhook_secret).verify(hook.body, hook.headers)
            assert event["type"] == "video.completed" and event["data"] == {"id": video["id"]}
            assert event["object"] == "event" and event["id"].startswith("evt_")
            assert isinstance(event["created_at"], int)
            assert hook.headers["webhook-id"].startswith("wh_") and hook.headers["webhook-id"] != event["id"]
            assert hook.headers["user-agent"] == "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
            assert hook.headers["content-type"] == "application/json"
            # The receiver is told about a finished video: fetching it must show it completed.
            fetched = (await client.get(f"/v1/videos/{video['id']}")).json()
            assert fetched["status"] == "completed"

    async def test_failed_event_for_moderated_prompt(
        self, asgi_sim: Factory, receiver: Any, create: Create, webhook_secret: str
    ) -> None:
        async with asgi_sim(webhook_url=receiver.url) as client:
            video = await create(client, prompt="something forbidden")
            [hook] = await receiver.wait_for(1)
            event = Webhook(webhook_secret).verify(hook.body, hook.headers)
            assert (event["type"], event["data"]["id"]) == ("video.failed", video["id"])

    async def test_non_2xx_is_retried_with_same_id_and_fresh_signature(
        self, asgi_sim: Factory, receiver: Any, create: Create, webhook_secret: str
    ) -> None:
        receiver.statuses = [500, 503]
        async with asgi_sim(webhook_url=receiver.url, webhook_max_attempts=3) as client:
            await create(client)
            hooks = await receiver.wait_for(3)
            assert len({hook.headers["webhook-id"] for hook in hooks}) == 1
            assert len({hook.body for hook in hooks}) == 1
            for hook in hooks:
                Webhook(webhook_secret).verify(hook.body, hook.headers)
            [log] = await deliveries(client, settled=1)
            assert log["status"] == "delivered"
            assert [a["status_code"] for a in log["attempts"]] == [500, 503, 200]
            # Exponential backoff: the second gap (base x 2) is not shorter than the first (base).
            times = [a["at"] for a in log["attempts"]]
            assert times[2] - times[1] >= times[1] - times[0] >= 0.04

    async def test_gives_up_after_max_attempts_on_connection_errors(self, asgi_sim: Factory, create: Create) -> None:
        async with asgi_sim(webhook_url="http://127.0.0.1:9/unreachable", webhook_max_attempts=2) as client:
            await create(client)
            [log] = await deliveries(client, settled=1)
            assert log["status"] == "failed"
            assert len(log["attempts"]) == 2
            assert all(a["status_code"] is None and a["error"] for a in log["attempts"])

    async def test_webhook_url_set_at_runtime_is_used(self, asgi_sim: Factory, receiver: Any, create: Create) -> None:
        async with asgi_sim() as client:
            await client.patch("/_sim/config", json={"webhook_url": receiver.url})
            await create(client)
            assert len(await receiver.wait_for(1)) == 1


class TestWebhookFaults:
    async def test_duplicate_sends_the_same_webhook_id_twice(
        self, asgi_sim: Factory, receiver: Any, create: Create
    ) -> None:
        async with asgi_sim(webhook_url=receiver.url) as client:
            await client.patch("/_sim/faults", json={"webhook_duplicate": True})
            await create(client)
            first, second = await receiver.wait_for(2)
            assert first.headers["webhook-id"] == second.headers["webhook-id"]
            assert first.body == second.body

    async def test_drop_next_skips_only_that_many(
        self, asgi_sim: Factory, receiver: Any, create: Create, poll: Poll
    ) -> None:
        async with asgi_sim(webhook_url=receiver.url) as client:
            await client.patch("/_sim/faults", json={"webhook_drop_next": 1})
            dropped = await create(client)
            await poll(client, dropped["id"])
            delivered = await create(client)
            [hook] = await receiver.wait_for(1)
            assert json.loads(hook.body)["data"]["id"] == delivered["id"]
            log = await deliveries(client, settled=2)
            assert [d["status"] for d in log] == ["dropped", "delivered"]
            assert (await client.get("/_sim/faults")).json()["webhook_drop_next"] == 0

    async def test_reorder_sends_a_held_batch_newest_first(
        self, asgi_sim: Factory, receiver: Any, create: Create, poll: Poll
    ) -> None:
        async with asgi_sim(webhook_url=receiver.url) as client:
            await client.patch("/_sim/faults", json={"webhook_reorder_batch": 2, "webhook_reorder_window_seconds": 30})
            first = await create(client)
            await poll(client, first["id"])
            await asyncio.sleep(0.2)
            assert receiver.received == []  # held until the batch fills
            second = await create(client)
            hooks = await receiver.wait_for(2)
            assert [json.loads(h.body)["data"]["id"] for h in hooks] == [second["id"], first["id"]]

    async def test_delay_holds_back_the_first_attempt(
        self, asgi_sim: Factory, receiver: Any, create: Create, poll: Poll
    ) -> None:
        async with asgi_sim(webhook_url=receiver.url) as client:
            await client.patch("/_sim/faults", json={"webhook_delay_seconds": 0.6})
            video = await create(client)
            await poll(client, video["id"])
            completed_seen = time.monotonic()
            await receiver.wait_for(1)
            assert time.monotonic() - completed_seen >= 0.5
