"""A caller's standing callback endpoints are capped (`VG_CALLBACKS__MAX_ENDPOINTS_PER_CALLER`)."""

from __future__ import annotations

import asyncio

from tests.support.callbacks import Receiver, StackFactory, callback_settings


class TestEndpointCap:
    async def test_one_more_than_the_cap_is_a_409_in_openai_shape(
        self, make_stack: StackFactory, receiver: Receiver
    ) -> None:
        async with make_stack(callback_settings(max_endpoints_per_caller=3)) as stack:
            _, client = await stack.new_caller()
            async with client:
                for n in range(3):
                    created = await client.post("/v1/callbacks/endpoints", json={"url": receiver.url(f"/e{n}")})
                    assert created.status_code == 200, created.text
                refused = await client.post("/v1/callbacks/endpoints", json={"url": receiver.url("/e3")})
                assert refused.status_code == 409, refused.text
                error = refused.json()["error"]
                assert error["type"] == "invalid_request_error"
                assert error["code"] == "too_many_callback_endpoints"
                assert error["param"] == "url"
                assert "3" in error["message"]
                assert len((await client.get("/v1/callbacks/endpoints")).json()["data"]) == 3

                # Subscribing a URL already subscribed is still the same endpoint, not one more.
                again = await client.post("/v1/callbacks/endpoints", json={"url": receiver.url("/e0")})
                assert again.status_code == 200, again.text

                # Removing one makes room again.
                first = (await client.get("/v1/callbacks/endpoints")).json()["data"][0]["id"]
                assert (await client.delete(f"/v1/callbacks/endpoints/{first}")).status_code == 200
                assert (
                    await client.post("/v1/callbacks/endpoints", json={"url": receiver.url("/e3")})
                ).status_code == 200

    async def test_concurrent_subscriptions_never_pass_the_cap(
        self, make_stack: StackFactory, receiver: Receiver
    ) -> None:
        async with make_stack(callback_settings(max_endpoints_per_caller=2)) as stack:
            _, client = await stack.new_caller()
            async with client:
                responses = await asyncio.gather(
                    *(client.post("/v1/callbacks/endpoints", json={"url": receiver.url(f"/c{n}")}) for n in range(6))
                )
                assert sorted(response.status_code for response in responses) == [200, 200, 409, 409, 409, 409]
                assert len((await client.get("/v1/callbacks/endpoints")).json()["data"]) == 2

    def test_the_cap_is_ten_by_default(self) -> None:
        assert callback_settings().max_endpoints_per_caller == 10
