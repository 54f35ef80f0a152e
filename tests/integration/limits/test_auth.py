"""Row 49: missing, malformed, revoked or expired key → 401 (within 1 s when changed elsewhere); a key in the
query string → 400, never logged."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, update

from app.core.db import Database
from app.models import ApiKey, Caller
from tests.support.factories import make_caller
from tests.support.limits import ADMIN_KEY, GatewayFactory, assert_error, create_video, refused_within_a_second


class TestUnauthenticated:
    @pytest.mark.parametrize(
        ("authorization", "code"),
        [
            (None, "missing_api_key"),
            ("Bearer", "missing_api_key"),
            ("Bearer    ", "missing_api_key"),
            ("Basic dXNlcjpwYXNz", "missing_api_key"),
            ("Bearer vg_not-a-key-at-all", "invalid_api_key"),
        ],
    )
    async def test_missing_or_malformed_key_is_401(
        self, limited_gateway: GatewayFactory, authorization: str | None, code: str
    ) -> None:
        headers = {"authorization": authorization} if authorization else {}
        async with limited_gateway() as gateway, gateway.client(None) as client:
            assert_error(await client.get("/v1/videos", headers=headers), 401, code)

    async def test_keys_revoked_or_expired_elsewhere_are_401_within_a_second(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        """Changed behind this process's back (another replica, the CLI, SQL): good keys are remembered for at
        most 1 s (app/auth/key_cache.py), so the refusal starts within that, and stays."""
        revoked, expired, disabled = [await make_caller(database) for _ in range(3)]
        async with (
            limited_gateway() as gateway,
            gateway.client(revoked.key) as revoked_client,
            gateway.client(expired.key) as expired_client,
            gateway.client(disabled.key) as disabled_client,
        ):
            clients = (revoked_client, expired_client, disabled_client)
            for client in clients:
                assert (await client.get("/v1/videos")).status_code == 200
            async with database.sessionmaker.begin() as session:
                await session.execute(update(ApiKey).where(ApiKey.id == revoked.key_id).values(revoked_at=func.now()))
                await session.execute(update(ApiKey).where(ApiKey.id == expired.key_id).values(expires_at=func.now()))
                await session.execute(update(Caller).where(Caller.id == disabled.id).values(disabled_at=func.now()))
            for client in clients:
                await refused_within_a_second(client)

    async def test_a_key_revoked_through_the_admin_api_is_401_at_once(
        self, limited_gateway: GatewayFactory, database: Database
    ) -> None:
        caller = await make_caller(database)
        async with (
            limited_gateway() as gateway,
            gateway.client(caller.key) as client,
            gateway.client(ADMIN_KEY) as admin,
        ):
            assert (await client.get("/v1/videos")).status_code == 200  # now remembered as good
            assert (await admin.delete(f"/v1/admin/keys/{caller.key_id}")).status_code == 200
            assert_error(await client.get("/v1/videos"), 401, "invalid_api_key")


class TestKeyInQueryString:
    @pytest.mark.parametrize("param", ["api_key", "key"])
    async def test_refused_with_400_even_beside_a_valid_header(
        self, limited_gateway: GatewayFactory, database: Database, param: str
    ) -> None:
        caller = await make_caller(database)
        async with limited_gateway() as gateway, gateway.client(caller.key) as client:
            response = await client.get("/v1/videos", params={param: caller.key})
            assert_error(response, 400, "api_key_in_query", "invalid_request_error")
            assert caller.key not in response.text
            before = gateway.creates
            response = await client.post(f"/v1/videos?{param}={caller.key}", files={"prompt": (None, "x")})
            assert_error(response, 400, "api_key_in_query")
            assert gateway.creates == before

    async def test_keys_never_reach_the_logs(
        self,
        limited_gateway: GatewayFactory,
        database: Database,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caller = await make_caller(database)
        caplog.set_level(logging.DEBUG)
        async with (
            limited_gateway() as gateway,
            gateway.client(caller.key) as client,
            gateway.client(None) as anon,
            gateway.client(ADMIN_KEY) as admin,
        ):
            await anon.get("/v1/videos", params={"api_key": caller.key})
            await anon.get("/v1/videos", params={"key": caller.key, "limit": "2"})
            await client.get("/v1/videos", params={"api_key": caller.key})
            await client.get("/v1/usage", params={"key": caller.key})
            await admin.get("/v1/admin/callers", params={"api_key": ADMIN_KEY})
            await anon.get("/v1/videos", headers={"authorization": f"Bearer {caller.key}x"})
            await create_video(client)
            await client.get("/v1/usage")
            await admin.get(f"/v1/admin/callers/{caller.id}/keys")
        # The test client's own httpx records print the URL it sent; the gateway's records are what count.
        records = [r for r in caplog.records if not (r.name.startswith("httpx") and "gateway.test" in r.getMessage())]
        assert any("query string" in r.getMessage() for r in records)  # the refusals were logged...
        for record in records:
            text = record.getMessage() + repr(record.args) + repr(record.__dict__.get("exc_text"))
            assert caller.key not in text, record  # ...without the key
            assert ADMIN_KEY not in text, record
