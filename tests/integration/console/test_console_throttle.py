"""Defect 5: the console's sign-in is throttled per client address and for the whole process.

60 wrong admin keys in a burst, then the right one: before the fix the right one signed in. Now the address is
locked out after its free failures, and while it is locked even the right key gets 429 with `Retry-After`.
The console and the admin API guess the same key, so they share one throttle.
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
from tests.support.settings import make_settings

ADMIN_KEY = "vg-admin-throttle-test-0123456789"
FREE_FAILURES = 10
ATTACKER = "203.0.113.7"
OPERATOR = "198.51.100.9"


def settings_with(base: Settings, **fields: Any) -> Settings:
    """`base` validated again with `fields` (groups as dicts, partial ones filled with their defaults)."""
    return Settings(**{**dict(base), **fields})


@pytest.fixture
async def console(database_url: str) -> AsyncIterator[FastAPI]:
    """A gateway of its own (the throttle is per process), with a first lockout long enough for a slow run."""
    settings = settings_with(
        make_settings(database_url),
        admin_api_key=SecretStr(ADMIN_KEY),
        auth={"admin_free_failures_per_address": FREE_FAILURES, "admin_first_lockout_seconds": 30.0},
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def browser_at(app: FastAPI, address: str, **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://console.test", headers=headers)


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/console/login", data={"admin_key": key, "next": "/console/videos"})


def lockout_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("logger") == "app.auth.throttle" and "lockout" in r["event"]]


class TestConsoleSignInThrottle:
    async def test_sixty_wrong_keys_then_the_right_one_is_429_with_retry_after(self, console: FastAPI) -> None:
        with capture_json_logs() as stream:
            async with browser_at(console, ATTACKER) as attacker:
                statuses = [(await sign_in(attacker, f"guess-{n:02d}")).status_code for n in range(60)]
                response = await sign_in(attacker, ADMIN_KEY)
                assert (await attacker.get("/console/videos")).status_code == 303  # not signed in
        # The free failures and the one that starts the lockout are checked (401); the rest are not (429).
        assert statuses == [401] * (FREE_FAILURES + 1) + [429] * (60 - FREE_FAILURES - 1)
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 30
        assert "set-cookie" not in response.headers
        assert "Too many failed sign-ins" in response.text
        assert response.headers["cache-control"] == "no-store"

        records = json_records(stream)
        lockouts = lockout_lines(records)
        assert len(lockouts) == 1, lockouts
        assert ATTACKER in lockouts[0]["event"]
        logged = stream.getvalue()
        assert ADMIN_KEY not in logged and "guess-" not in logged

    async def test_another_address_still_signs_in(self, console: FastAPI) -> None:
        async with browser_at(console, ATTACKER) as attacker, browser_at(console, OPERATOR) as operator:
            for n in range(FREE_FAILURES + 1):
                await sign_in(attacker, f"guess-{n}")
            assert (await sign_in(attacker, ADMIN_KEY)).status_code == 429
            assert (await sign_in(operator, ADMIN_KEY)).status_code == 303

    async def test_a_lockout_on_the_console_also_holds_on_the_admin_api(self, console: FastAPI) -> None:
        async with browser_at(console, ATTACKER) as attacker:
            for n in range(FREE_FAILURES + 1):
                await sign_in(attacker, f"guess-{n}")
            response = await attacker.get("/v1/admin/callers", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "too_many_failed_attempts"
        assert "retry-after" in response.headers

    async def test_a_successful_sign_in_clears_the_addresss_failures(self, console: FastAPI) -> None:
        async with browser_at(console, OPERATOR) as operator:
            for n in range(FREE_FAILURES):
                assert (await sign_in(operator, f"typo-{n}")).status_code == 401
            assert (await sign_in(operator, ADMIN_KEY)).status_code == 303
            for n in range(FREE_FAILURES):
                assert (await sign_in(operator, f"typo-{n}")).status_code == 401

    async def test_an_empty_key_is_not_a_guess(self, console: FastAPI) -> None:
        async with browser_at(console, OPERATOR) as operator:
            for _ in range(3 * FREE_FAILURES):
                assert (await sign_in(operator, "")).status_code == 401
            assert (await sign_in(operator, ADMIN_KEY)).status_code == 303
