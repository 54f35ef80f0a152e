"""`video-gateway keys create|list|revoke|limits` against the run's database, seen through a live gateway."""

from __future__ import annotations

import asyncio
import uuid

from typer.testing import CliRunner, Result

from app.auth import keys
from app.cli import cli
from tests.support.limits import GatewayFactory, answers_within_a_second, assert_error, refused_within_a_second
from tests.support.settings import make_settings


async def invoke(database_url: str, *args: str) -> Result:
    # The CLI runs its own event loop (asyncio.run); give it a thread so it does not meet the test's loop.
    # The whole command line: `keys` is auth's group with the limits domain's `limits`, composed by app/cli.py.
    settings = make_settings(database_url)
    return await asyncio.to_thread(lambda: CliRunner().invoke(cli, ["keys", *args], obj=settings))


class TestKeysCli:
    async def test_create_list_revoke(self, database_url: str, limited_gateway: GatewayFactory) -> None:
        name = f"cli-{uuid.uuid4().hex[:8]}"
        created = await invoke(database_url, "create", name, "--create-caller", "--label", "batch")
        assert created.exit_code == 0, created.output
        key = created.stdout.strip()
        assert keys.looks_like_key(key)
        again = await invoke(database_url, "create", name, "--label", "second")
        second = again.stdout.strip()

        listed = await invoke(database_url, "list", name)
        assert listed.exit_code == 0, listed.output
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:3] == ["ID", "CALLER", "PREFIX"]
        assert len(lines) == 3 and all(" active " in line for line in lines[1:])
        assert key[:7] in listed.stdout and second[:7] in listed.stdout
        assert key not in listed.stdout and keys.digest(key).hex()[:16] not in listed.stdout

        async with limited_gateway() as gateway, gateway.client(key) as one, gateway.client(second) as two:
            assert (await one.get("/v1/videos")).status_code == 200
            key_id = lines[1].split()[0]
            revoked = await invoke(database_url, "revoke", key_id)
            assert revoked.exit_code == 0, revoked.output
            await refused_within_a_second(one)
            # A leaked key can be revoked by itself, without looking up its id.
            assert (await invoke(database_url, "revoke", second)).exit_code == 0
            await refused_within_a_second(two)

        states = (await invoke(database_url, "list", name)).stdout
        assert states.count(" revoked ") == 2

    async def test_limits_show_set_and_clear(self, database_url: str, limited_gateway: GatewayFactory) -> None:
        name = f"cli-{uuid.uuid4().hex[:8]}"
        key = (await invoke(database_url, "create", name, "--create-caller")).stdout.strip()
        shown = await invoke(database_url, "limits", name)
        assert shown.exit_code == 0, shown.output
        assert "requests per minute  600          (default)" in shown.stdout

        async with limited_gateway() as gateway, gateway.client(key) as client:
            assert (await client.get("/v1/videos")).status_code == 200
            result = await invoke(database_url, "limits", name, "--rpm", "1", "--budget", "2.5", "--period", "month")
            assert "requests per minute  1            (caller)" in result.stdout
            assert "budget (USD)         2.5000       (caller)" in result.stdout
            # Set elsewhere (the CLI): applies within the 1 s a good key's rows are remembered.
            assert_error(await answers_within_a_second(client, 429), 429, "rate_limit_exceeded")
            cleared = await invoke(database_url, "limits", name, "--clear", "rpm")
            assert "requests per minute  600          (default)" in cleared.stdout
            await answers_within_a_second(client, 200)

    async def test_errors_exit_non_zero_without_a_traceback(self, database_url: str) -> None:
        missing = await invoke(database_url, "create", f"nobody-{uuid.uuid4().hex[:8]}")
        assert missing.exit_code == 1 and "No caller named" in missing.output
        bad = await invoke(database_url, "limits", "whoever", "--period", "week")
        assert bad.exit_code == 2
        unknown = await invoke(database_url, "revoke", str(uuid.uuid4()))
        assert unknown.exit_code == 1 and "No key found" in unknown.output
