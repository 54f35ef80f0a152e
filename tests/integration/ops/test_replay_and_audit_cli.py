"""`video-gateway replay` and `video-gateway audit` on an archive whose objects are in S3 (SeaweedFS), with the
simulator on a socket as upstream: a replay never discards a served copy, the audit finds what S3 lost."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from app.archive.storage import make_client
from app.cli import cli
from app.core.config import S3Settings, get_settings
from app.models import Variant
from tests.support.ops import ThreadedSimulator, make_video_sync, seed_archived, sql

runner = CliRunner()


def states(url: str, video_id: str) -> dict[str, tuple[str, str | None]]:
    rows = sql(url, f"SELECT variant, state, sha256 FROM assets WHERE video_id = '{video_id}'")
    return {variant: (state, sha256) for variant, state, sha256 in rows}


def live_jobs(url: str, video_id: str) -> list[str]:
    rows = sql(
        url,
        f"SELECT variant FROM archive_jobs WHERE video_id = '{video_id}' AND state IN ('queued', 'running')"
        " ORDER BY variant",
    )
    return [variant for (variant,) in rows]


def object_key(s3: S3Settings, video_id: str, variant: Variant) -> str:
    return f"{s3.prefix}/{video_id}/{variant.value}.{variant.extension}"


def test_replay_of_a_video_upstream_forgot_says_so_and_changes_nothing(
    ops_database: str, ops_s3: S3Settings, upstream: ThreadedSimulator
) -> None:
    upstream_id = upstream.completed_video()
    video_id = make_video_sync(ops_database, upstream_id=upstream_id)
    bodies = seed_archived(ops_database, ops_s3, video_id)
    before = states(ops_database, video_id)
    upstream.expire(upstream_id)

    result = runner.invoke(cli, ["replay", video_id])
    assert result.exit_code == 1, result.output
    assert "upstream no longer has" in result.output and "nothing changed" in result.output
    assert "3 archived variant(s) are still served" in result.output
    assert states(ops_database, video_id) == before
    assert {state for state, _ in before.values()} == {"archived"}
    assert live_jobs(ops_database, video_id) == []
    client = make_client(ops_s3)
    for variant, body in bodies.items():
        stored = client.get_object(Bucket=ops_s3.bucket, Key=object_key(ops_s3, video_id, variant))["Body"].read()
        assert stored == body


def test_replay_while_upstream_has_it_queues_redownloads_and_keeps_the_archived_rows(
    ops_database: str, ops_s3: S3Settings, upstream: ThreadedSimulator
) -> None:
    video_id = make_video_sync(ops_database, upstream_id=upstream.completed_video())
    seed_archived(ops_database, ops_s3, video_id)
    before = states(ops_database, video_id)

    result = runner.invoke(cli, ["replay", video_id])
    assert result.exit_code == 0, result.output
    assert f"queued 3 download(s) for {video_id}" in result.output
    assert states(ops_database, video_id) == before  # still archived, still served, until the new copies land
    assert live_jobs(ops_database, video_id) == ["spritesheet", "thumbnail", "video"]


def test_audit_finds_missing_and_corrupted_objects_and_repairs_or_marks_them_lost(
    ops_database: str, ops_s3: S3Settings, upstream: ThreadedSimulator
) -> None:
    alive = make_video_sync(ops_database, upstream_id=upstream.completed_video())
    forgotten = make_video_sync(ops_database, upstream_id="video_unknown_upstream")  # upstream answers 404
    seed_archived(ops_database, ops_s3, alive)
    bodies = seed_archived(ops_database, ops_s3, forgotten)
    client = make_client(ops_s3)
    client.delete_object(Bucket=ops_s3.bucket, Key=object_key(ops_s3, alive, Variant.VIDEO))
    thumbnail = bodies[Variant.THUMBNAIL]
    corrupted = thumbnail[:100] + bytes(byte ^ 0xFF for byte in thumbnail[100:116]) + thumbnail[116:]
    client.put_object(Bucket=ops_s3.bucket, Key=object_key(ops_s3, forgotten, Variant.THUMBNAIL), Body=corrupted)

    # A HEAD sees the missing object, not the corrupted one (its size is right).
    dry = runner.invoke(cli, ["audit", "--dry-run"], terminal_width=250)
    assert dry.exit_code == 1, dry.output
    assert "6 object(s) checked" in dry.output
    assert alive in dry.output and "missing" in dry.output and "would_repair" in dry.output
    assert forgotten not in dry.output
    assert states(ops_database, alive)["video"][0] == "archived"  # a dry run changes nothing

    full = runner.invoke(cli, ["audit", "--sha256", "--limit", "100"], terminal_width=250)
    assert full.exit_code == 1, full.output
    assert "6 object(s) checked" in full.output and "SHA-256" in full.output
    assert "checksum_mismatch" in full.output and "lost" in full.output
    assert "1 repair(s) queued, 1 lost" in full.output
    assert states(ops_database, alive)["video"][0] == "pending"
    assert live_jobs(ops_database, alive) == ["video"]
    assert states(ops_database, forgotten)["thumbnail"][0] == "lost"

    # What is left archived is intact; the lost and the pending ones are not looked at again.
    again = runner.invoke(cli, ["audit", "--sha256"], terminal_width=250)
    assert again.exit_code == 0, again.output
    assert "4 object(s) checked" in again.output and "all intact" in again.output


def test_audit_of_one_healthy_video_with_a_full_read(
    ops_database: str, ops_s3: S3Settings, upstream: ThreadedSimulator
) -> None:
    video_id = make_video_sync(ops_database, upstream_id=upstream.completed_video())
    bodies = seed_archived(ops_database, ops_s3, video_id)
    other = make_video_sync(ops_database)
    seed_archived(ops_database, ops_s3, other)
    make_client(ops_s3).delete_object(Bucket=ops_s3.bucket, Key=object_key(ops_s3, other, Variant.VIDEO))

    result = runner.invoke(cli, ["audit", "--video", video_id, "--sha256"], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "3 object(s) checked" in result.output and "all intact" in result.output
    assert {sha for _, sha in states(ops_database, video_id).values()} == {
        hashlib.sha256(body).hexdigest() for body in bodies.values()
    }
    assert states(ops_database, other)["video"][0] == "archived"  # not this video: not looked at


def test_replay_when_upstream_cannot_be_asked_changes_nothing(
    ops_database: str, ops_s3: S3Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VG_UPSTREAM__BASE_URL", "http://127.0.0.1:9/v1")  # the discard port: refused at once
    monkeypatch.setenv("VG_UPSTREAM__RETRY_BASE_SECONDS", "0.01")
    get_settings.cache_clear()
    video_id = make_video_sync(ops_database)
    seed_archived(ops_database, ops_s3, video_id)
    before = states(ops_database, video_id)

    result = runner.invoke(cli, ["replay", video_id])
    assert result.exit_code == 1, result.output
    assert "could not ask upstream" in result.output and "nothing changed" in result.output
    assert states(ops_database, video_id) == before
    assert live_jobs(ops_database, video_id) == []
