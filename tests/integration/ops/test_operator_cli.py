"""The operator commands against a real database: status, replay and webhooks list."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app import migrate
from app.cli import cli
from app.core.config import get_settings
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.support import postgres

runner = CliRunner()


@pytest.fixture
def ops_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = postgres.create_database("vg_ops")
    url = postgres.sqlalchemy_url(name)
    migrate.upgrade(url)
    monkeypatch.setenv("VG_MODE", "dev")
    monkeypatch.setenv("VG_DB__URL", url)
    monkeypatch.setenv("VG_WEBHOOKS__SECRETS", TEST_WEBHOOK_SECRET)
    monkeypatch.setenv("COLUMNS", "250")  # tables wide enough to show whole ids
    get_settings.cache_clear()
    try:
        yield url
    finally:
        get_settings.cache_clear()
        postgres.drop_database(name)


def sql(url: str, *statements: str) -> None:
    async def run() -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
        await engine.dispose()

    asyncio.run(run())


def seed_video(url: str, status: str = "completed") -> str:
    video_id = "video_" + uuid.uuid4().hex
    caller = uuid.uuid4()
    sql(
        url,
        f"INSERT INTO callers (id, name) VALUES ('{caller}', 'ops-{caller}')",
        "INSERT INTO videos (id, caller_id, upstream_id, model, size, seconds, prompt, status, progress, expires_at)"
        f" VALUES ('{video_id}', '{caller}', 'up_{video_id}', 'sora-2', '720x1280', '4', 'p', '{status}', 100,"
        " now() + interval '3 minutes')",
    )
    return video_id


def test_replay_queues_every_variant_and_status_shows_them_at_risk(ops_database: str) -> None:
    video_id = seed_video(ops_database)
    replayed = runner.invoke(cli, ["replay", video_id])
    assert replayed.exit_code == 0, replayed.output
    assert "queued 3 download(s)" in replayed.output
    status = runner.invoke(cli, ["status", "--within", "5"], terminal_width=200)
    assert status.exit_code == 0, status.output
    assert "queued" in status.output and "3" in status.output
    assert "At risk" in status.output and video_id in status.output
    # Replaying again while those downloads are queued adds nothing.
    again = runner.invoke(cli, ["replay", video_id])
    assert again.exit_code == 1


def test_replay_refuses_a_video_that_is_not_completed(ops_database: str) -> None:
    video_id = seed_video(ops_database, status="in_progress")
    result = runner.invoke(cli, ["replay", video_id])
    assert result.exit_code == 1
    assert "nothing queued" in result.output


def test_webhooks_list_shows_stored_deliveries_by_outcome(ops_database: str) -> None:
    sql(
        ops_database,
        "INSERT INTO webhook_events (id, webhook_id, event_id, event_type, upstream_video_id, outcome, body)"
        f" VALUES ('{uuid.uuid4()}', 'wh_orphan_1', 'evt_1', 'video.completed', 'up_x', 'orphan', '{{}}')",
        "INSERT INTO webhook_events (id, webhook_id, event_id, event_type, outcome, body)"
        f" VALUES ('{uuid.uuid4()}', 'wh_ignored_1', 'evt_2', 'batch.completed', 'ignored', '{{}}')",
    )
    everything = runner.invoke(cli, ["webhooks", "list"], terminal_width=200)
    assert everything.exit_code == 0, everything.output
    assert "wh_orphan_1" in everything.output and "wh_ignored_1" in everything.output
    orphans = runner.invoke(cli, ["webhooks", "list", "--outcome", "orphan"], terminal_width=200)
    assert "wh_orphan_1" in orphans.output and "wh_ignored_1" not in orphans.output
