"""Defect 5 on `/v1/admin/*`: bad admin keys are throttled per client address and for the whole process.

While an address (or everyone) is locked out, even the right key gets 429 with `Retry-After`, in OpenAI's error
shape; each lockout is logged once; a request without any key is not a guess and is not counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.core.config import Settings
from app.main import create_app
from tests.support.json_logs import capture_json_logs, json_records
from tests.support.limits import ADMIN_KEY, assert_error
from tests.support.settings import make_settings

FREE_PER_ADDRESS = 10
FREE_GLOBAL = 20


def settings_with(base: Settings, **fields: Any) -> Settings:
    """`base` validated again with `fields` (groups as dicts, partial ones filled with their defaults)."""
    return Settings(**{**dict(base), **fields})


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[FastAPI]:
    settings = settings_with(
        make_settings(database_url),
        admin_api_key=SecretStr(ADMIN_KEY),
        auth={
            "admin_free_failures_per_address": FREE_PER_ADDRESS,
            "admin_free_failures_global": FREE_GLOBAL,
            "admin_first_lockout_seconds": 30.0,
        },
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client_at(app: FastAPI, address: str, key: str | None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test", headers=headers)


async def admin_get(app: FastAPI, address: str, key: str | None) -> httpx.Response:
    async with client_at(app, address, key) as client:
        return await client.get("/v1/admin/callers")


def lockout_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("logger") == "app.auth.throttle" and "lockout" in r["event"]]


class TestAdminKeyThrottle:
    async def test_sixty_wrong_keys_then_the_right_one_is_429_with_retry_after(self, gateway: FastAPI) -> None:
        with capture_json_logs() as stream:
            statuses = [(await admin_get(gateway, "203.0.113.7", f"guess-{n:02d}")).status_code for n in range(60)]
            response = await admin_get(gateway, "203.0.113.7", ADMIN_KEY)
        assert statuses == [401] * (FREE_PER_ADDRESS + 1) + [429] * (60 - FREE_PER_ADDRESS - 1)
        error = assert_error(response, 429, "too_many_failed_attempts", "rate_limit_error")
        assert "try again" in error["message"].lower()
        assert 1 <= int(response.headers["retry-after"]) <= 30
        lockouts = lockout_lines(json_records(stream))
        assert len(lockouts) == 1, lockouts
        assert "203.0.113.7" in lockouts[0]["event"]
        assert ADMIN_KEY not in stream.getvalue()
        # Another address is not locked out by this one.
        assert (await admin_get(gateway, "198.51.100.9", ADMIN_KEY)).status_code == 200

    async def test_many_addresses_lock_everyone_out(self, gateway: FastAPI) -> None:
        """A guesser spread over many addresses trips the global bucket: then every address waits."""
        with capture_json_logs() as stream:
            for n in range(FREE_GLOBAL + 1):
                response = await admin_get(gateway, f"192.0.2.{n + 1}", f"guess-{n}")
                assert response.status_code == 401, n
            response = await admin_get(gateway, "198.51.100.9", ADMIN_KEY)
        assert_error(response, 429, "too_many_failed_attempts")
        assert int(response.headers["retry-after"]) >= 1
        lockouts = lockout_lines(json_records(stream))
        assert len(lockouts) == 1, lockouts
        assert "every address" in lockouts[0]["event"]

    async def test_requests_without_a_key_are_not_guesses(self, gateway: FastAPI) -> None:
        for _ in range(3 * FREE_PER_ADDRESS):
            assert_error(await admin_get(gateway, "203.0.113.8", None), 401, "invalid_admin_key")
        assert (await admin_get(gateway, "203.0.113.8", ADMIN_KEY)).status_code == 200

    async def test_the_right_key_clears_its_addresss_failures(self, gateway: FastAPI) -> None:
        # Two rounds of free failures: 20 in all, still within the global bucket's free failures.
        for round_ in range(2):
            for n in range(FREE_PER_ADDRESS):
                response = await admin_get(gateway, "203.0.113.9", f"stale-{round_}-{n}")
                assert_error(response, 401, "invalid_admin_key")
            assert (await admin_get(gateway, "203.0.113.9", ADMIN_KEY)).status_code == 200
