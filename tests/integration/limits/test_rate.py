"""Row 52: requests per minute per key → 429 with Retry-After; per-key and per-caller overrides apply live."""

from __future__ import annotations

from app.auth import service as auth_service
from app.core.db import Database
from tests.support.factories import make_caller
from tests.support.limits import ADMIN_KEY, GatewayFactory, assert_error


class TestRequestsPerMinute:
    async def test_the_request_over_the_limit_gets_429_with_retry_after(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        async with limited_gateway(requests_per_minute=3) as gateway, gateway.client(caller.key) as client:
            for _ in range(3):
                assert (await client.get("/v1/videos")).status_code == 200
            refused = await client.get("/v1/videos")
            assert_error(refused, 429, "rate_limit_exceeded", "rate_limit_error")
            assert 1 <= int(refused.headers["retry-after"]) <= 120
            # Refused requests are not counted: the wait announced does not grow with each retry.
            again = await client.get("/v1/videos")
            assert abs(int(again.headers["retry-after"]) - int(refused.headers["retry-after"])) <= 1

    async def test_the_limit_is_per_key(self, limited_gateway: GatewayFactory, database: Database) -> None:
        caller = await make_caller(database)
        async with database.sessionmaker.begin() as session:
            owner = await auth_service.get_caller(session, caller_id=caller.id)
            second_key = (await auth_service.add_key(session, caller=owner, label="second")).key
        async with (
            limited_gateway(requests_per_minute=2) as gateway,
            gateway.client(caller.key) as first,
            gateway.client(second_key) as second,
        ):
            for _ in range(2):
                assert (await first.get("/v1/videos")).status_code == 200
            assert (await first.get("/v1/videos")).status_code == 429
            assert (await second.get("/v1/videos")).status_code == 200

    async def test_overrides_take_effect_without_a_restart(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        async with (
            limited_gateway() as gateway,
            gateway.client(caller.key) as client,
            gateway.client(ADMIN_KEY) as admin,
        ):
            assert (await client.get("/v1/videos")).status_code == 200
            # The caller's limit: 2 per minute (one request already made).
            response = await admin.patch(f"/v1/admin/callers/{caller.id}/limits", json={"requests_per_minute": 2})
            assert response.json()["effective"]["requests_per_minute"] == 2
            assert (await client.get("/v1/videos")).status_code == 200
            assert (await client.get("/v1/videos")).status_code == 429
            # A key's own limit wins over its caller's.
            response = await admin.patch(f"/v1/admin/keys/{caller.key_id}", json={"requests_per_minute": 100})
            assert response.status_code == 200
            assert (await client.get("/v1/videos")).status_code == 200
            usage = (await client.get("/v1/usage")).json()
            assert usage["limits"]["requests_per_minute"] == 100
