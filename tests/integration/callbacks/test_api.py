"""`/v1/callbacks`: standing endpoints (events go there and to the video's own URL), the delivery log,
and ownership (a caller sees and removes only its own)."""

from __future__ import annotations

import json

from app.callbacks.service import CallbackEvent
from tests.support.callbacks import CallbackStack, Receiver
from tests.support.gateway import gateway_client


class TestStandingEndpoints:
    async def test_events_go_to_the_video_url_and_to_every_standing_endpoint(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, client = await stack.new_caller()
        async with client:
            created = await client.post("/v1/callbacks/endpoints", json={"url": receiver.url("/standing")})
            assert created.status_code == 200, created.text
            endpoint = created.json()
            assert endpoint["id"].startswith("cbe_") and endpoint["object"] == "callback.endpoint"
            again = await client.post("/v1/callbacks/endpoints", json={"url": receiver.url("/standing")})
            assert again.json()["id"] == endpoint["id"]  # subscribing twice is one subscription
            listed = (await client.get("/v1/callbacks/endpoints")).json()
            assert [item["url"] for item in listed["data"]] == [receiver.url("/standing")]

        video = await stack.new_video(caller, callback_url=receiver.url("/hook"))
        await stack.emit(video)
        await stack.settle(video.id)
        assert sorted(request.path for request in receiver.requests) == ["/hook", "/standing"]
        bodies = {request.path: json.loads(request.body) for request in receiver.requests}
        assert bodies["/hook"]["id"] == bodies["/standing"]["id"]  # one event ...
        webhook_ids = {request.headers["webhook-id"] for request in receiver.requests}
        assert len(webhook_ids) == 2  # ... two deliveries

    async def test_a_video_url_that_is_also_an_endpoint_gets_the_event_once(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, client = await stack.new_caller()
        async with client:
            await client.post("/v1/callbacks/endpoints", json={"url": receiver.url()})
        video = await stack.new_video(caller, callback_url=receiver.url())
        await stack.emit(video)
        await stack.settle(video.id)
        assert len(receiver.requests) == 1

    async def test_removing_an_endpoint_cancels_what_is_pending_and_stops_new_events(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, client = await stack.new_caller()
        _, other = await stack.new_caller()
        async with client, other:
            endpoint_id = (await client.post("/v1/callbacks/endpoints", json={"url": receiver.url()})).json()["id"]
            first = await stack.new_video(caller, callback_url=None)
            await stack.emit(first)  # pending, not yet sent

            refused = await other.delete(f"/v1/callbacks/endpoints/{endpoint_id}")
            assert refused.status_code == 404  # not theirs: the same answer as unknown
            deleted = await client.delete(f"/v1/callbacks/endpoints/{endpoint_id}")
            assert deleted.json() == {"id": endpoint_id, "object": "callback.endpoint.deleted", "deleted": True}
            assert (await client.delete(f"/v1/callbacks/endpoints/{endpoint_id}")).status_code == 404
            assert (await client.get("/v1/callbacks/endpoints")).json()["data"] == []

        (row,) = await stack.deliveries(first.id)
        assert row.state == "cancelled"
        second = await stack.new_video(caller, callback_url=None)
        await stack.emit(second)
        assert await stack.deliveries(second.id) == []
        assert receiver.requests == []

    async def test_unknown_fields_are_refused(self, callback_stack: CallbackStack, receiver: Receiver) -> None:
        _, client = await callback_stack.new_caller()
        async with client:
            response = await client.post("/v1/callbacks/endpoints", json={"url": receiver.url(), "events": ["x"]})
        assert response.status_code == 400


class TestDeliveryLog:
    async def test_the_log_shows_each_delivery_with_its_attempts_to_its_caller_only(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        receiver.script = [(500, {})]
        caller, client = await stack.new_caller()
        _, other = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url())
        await stack.emit(video, CallbackEvent.ARCHIVED)
        (row,) = await stack.settle(video.id)
        async with client, other:
            log = (await client.get("/v1/callbacks/deliveries")).json()
            assert (await other.get("/v1/callbacks/deliveries")).json()["data"] == []
            (entry,) = log["data"]
            assert entry["id"] == row.webhook_id and entry["video_id"] == video.id
            assert entry["event_type"] == "video.archived" and entry["state"] == "delivered"
            assert entry["url"] == receiver.url() and entry["endpoint_id"] is None
            assert [(a["attempt"], a["outcome"], a["status_code"], a["address"]) for a in entry["attempts"]] == [
                (1, "http_error", 500, "127.0.0.1"),
                (2, "delivered", 204, "127.0.0.1"),
            ]
            assert log["has_more"] is False

            second = await stack.new_video(caller, callback_url=receiver.url())
            await stack.emit(second, CallbackEvent.ARCHIVE_FAILED)
            page = (await client.get("/v1/callbacks/deliveries", params={"limit": 1})).json()
            assert [item["video_id"] for item in page["data"]] == [second.id] and page["has_more"] is True
            assert page["data"][0]["state"] == "pending" and page["data"][0]["next_attempt_at"] is not None
            rest = (await client.get("/v1/callbacks/deliveries", params={"after": page["last_id"]})).json()
            assert [item["video_id"] for item in rest["data"]] == [video.id]
            only = (await client.get("/v1/callbacks/deliveries", params={"video_id": video.id})).json()
            assert [item["id"] for item in only["data"]] == [row.webhook_id]

    async def test_the_callbacks_api_needs_a_key(self, callback_stack: CallbackStack) -> None:
        async with gateway_client(callback_stack.app, None) as anonymous:
            for path in ("/v1/callbacks/secret", "/v1/callbacks/endpoints", "/v1/callbacks/deliveries"):
                assert (await anonymous.get(path)).status_code == 401
