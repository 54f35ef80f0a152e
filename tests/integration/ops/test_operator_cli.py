"""The operator commands against a real database: status, replay and webhooks list (replay and audit of an
archive with objects in S3: test_replay_and_audit_cli.py)."""

from __future__ import annotations

import uuid

from typer.testing import CliRunner

from app.cli import cli
from tests.support.ops import ThreadedSimulator, make_video_sync, sql

runner = CliRunner()


def test_replay_queues_every_variant_and_status_shows_them_at_risk(
    ops_database: str, upstream: ThreadedSimulator
) -> None:
    video_id = make_video_sync(ops_database, upstream_id=upstream.completed_video())
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
    video_id = make_video_sync(ops_database, status="in_progress")
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
