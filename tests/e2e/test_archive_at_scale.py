"""The archive at scale, end to end: real simulator, API and worker processes, real signed webhooks, S3.

Every check is made against an independent source: the simulator's bytes are hashed here, the S3 objects are
listed and downloaded here, and the simulator's own delivery log says which webhooks went out and how they
were answered. The database is polled directly while waiting: the gateway's retrieve refreshes from upstream
and queues downloads itself, which would let a broken webhook path or reconciler go unnoticed.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from app.archive.storage import ArchiveStorage
from app.models import Variant
from tests.e2e.scale_helpers import (
    VARIANTS,
    CreatedVideo,
    create_videos,
    retrieve_all,
    rows,
    s3_copies,
    s3_listing,
    simulator_digests,
    wait_until_archived,
)
from tests.support.settings import TEST_WEBHOOK_SECRET
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

logger = logging.getLogger(__name__)

SYNTHETIC_VIDEO_BYTES = 65536
# Synthetic MP4s (no encoder) and one frame per second: 5 frames drawn per video (~0.1 s of CPU), so 200 renders
# fit in well under a minute on two cores. The simulator's completion rate, not the workers, paces these tests.
FAST_UPSTREAM = {
    "VG_SIMULATOR__SYNTHETIC_ASSET_BYTES": str(SYNTHETIC_VIDEO_BYTES),
    "VG_SIMULATOR__FPS": "1",
    "VG_SIMULATOR__RENDER_SECONDS": "0.5",
    "VG_WORKER__CONCURRENCY": "8",
}
RECONCILER_LOG_LINE = "reconciled:"


def worker_logs(stack: Stack) -> str:
    return "\n".join(
        path.read_text(errors="replace") for path in sorted(stack.logs.glob("worker-*.log")) if path.is_file()
    )


def assert_archive_is_complete_and_true(stack: Stack, created: list[CreatedVideo]) -> dict[str, Any]:
    """Every video completed with its three assets archived, each once in S3 with the simulator's bytes.

    Returns the database's videos (by id) for further checks.
    """
    videos = {record["id"]: record for record in rows(stack, "SELECT id, upstream_id, status, expires_at FROM videos")}
    assert set(videos) == {video.id for video in created}
    assert Counter(record["status"] for record in videos.values()) == {"completed": len(created)}
    upstream_ids = [record["upstream_id"] for record in videos.values()]
    assert None not in upstream_ids
    assert len(set(upstream_ids)) == len(created)

    assets = rows(stack, "SELECT video_id, variant, state, s3_key, bytes, sha256 FROM assets")
    assert len(assets) == 3 * len(created)
    assert {(asset["video_id"], asset["variant"]) for asset in assets} == {
        (video_id, variant) for video_id in videos for variant in VARIANTS
    }
    assert Counter(asset["state"] for asset in assets) == {"archived": len(assets)}
    storage = ArchiveStorage(stack.s3)
    try:
        expected_keys = {
            (a["video_id"], a["variant"]): storage.key_for(a["video_id"], Variant(a["variant"])) for a in assets
        }
    finally:
        storage.close()
    for asset in assets:
        assert asset["s3_key"] == expected_keys[asset["video_id"], asset["variant"]], asset

    # What the simulator serves, hashed here.
    served = simulator_digests(stack, [(videos[a["video_id"]]["upstream_id"], a["variant"]) for a in assets])
    for asset in assets:
        digest = served[videos[asset["video_id"]]["upstream_id"], asset["variant"]]
        assert (asset["bytes"], asset["sha256"]) == (digest.bytes, digest.sha256), asset
        if asset["variant"] == "video":
            assert asset["bytes"] == SYNTHETIC_VIDEO_BYTES
    # Thumbnails and spritesheets are real images drawn from each prompt: different videos, different bytes.
    thumbnails = {asset["sha256"] for asset in assets if asset["variant"] == "thumbnail"}
    assert len(thumbnails) == len(created)

    # Exactly one object per asset, nothing else under the prefix, no upload left open.
    keys, open_uploads = s3_listing(stack.s3)
    assert len(keys) == len(assets), Counter(keys).most_common(3)
    assert set(keys) == set(expected_keys.values())
    assert open_uploads == []
    copies = s3_copies(stack.s3, keys)
    for asset in assets:
        copy = copies[asset["s3_key"]]
        assert (copy.downloaded.bytes, copy.downloaded.sha256) == (asset["bytes"], asset["sha256"]), asset
        assert (copy.recorded_bytes, copy.recorded_sha256) == (asset["bytes"], asset["sha256"]), asset

    # The facade reports the same archive to each video's owner.
    by_video: dict[str, dict[str, Any]] = {}
    for asset in assets:
        by_video.setdefault(asset["video_id"], {})[asset["variant"]] = {
            "state": "archived",
            "bytes": asset["bytes"],
            "sha256": asset["sha256"],
            "error": None,
        }
    for video_id, body in retrieve_all(stack, created).items():
        assert body["status"] == "completed"
        assert body["archive"] == by_video[video_id]
    return videos


def test_200_videos_are_archived_once_each_through_signed_webhooks(
    private_stack: Callable[..., Any],
) -> None:
    count = 200
    # The reconciler runs once as each worker starts (nothing to do yet), then not for an hour: only the
    # webhooks can get these videos archived.
    env = {**FAST_UPSTREAM, "VG_SIMULATOR__QUEUE_SECONDS": "1.0", "VG_WORKER__RECONCILE_INTERVAL_SECONDS": "3600"}
    with private_stack(workers=2, **env) as stack:
        started = time.monotonic()
        created = create_videos(stack, count)
        all_created = time.monotonic()
        archived = wait_until_archived(stack, 3 * count, timeout=150, orphans_are_fatal=True)
        with stack.simulator() as simulator:  # before the checks below download everything again
            stats = simulator.get("/_sim/stats").raise_for_status().json()

        videos = assert_archive_is_complete_and_true(stack, created)
        upstream_to_ours = {record["upstream_id"]: video_id for video_id, record in videos.items()}

        # Every webhook went out once, signed: the receiver answers 2xx only after verifying the HMAC.
        with stack.simulator() as simulator:
            deliveries = simulator.get("/_sim/webhooks").raise_for_status().json()["data"]
        assert len(deliveries) == count
        assert Counter(delivery["status"] for delivery in deliveries) == {"delivered": count}
        assert {delivery["type"] for delivery in deliveries} == {"video.completed"}
        assert {delivery["video_id"] for delivery in deliveries} == set(upstream_to_ours)
        for delivery in deliveries:
            codes = [attempt["status_code"] for attempt in delivery["attempts"]]
            assert codes and 200 <= (codes[-1] or 0) < 300, delivery
            assert not any(code is not None and 400 <= code < 500 for code in codes), delivery
        assert stats["renders_completed"] == count
        assert stats["create_requests"] == count

        # One webhook_events row per delivered event, recorded as it was sent, each queueing its video's sync.
        events = rows(
            stack,
            "SELECT webhook_id, event_id, event_type, upstream_video_id, video_id, outcome, body FROM webhook_events",
        )
        assert len(events) == count
        sent = {delivery["webhook_id"]: delivery for delivery in deliveries}
        assert {event["webhook_id"] for event in events} == set(sent)
        assert {event["event_id"] for event in events} == {delivery["event_id"] for delivery in deliveries}
        for event in events:
            delivery = sent[event["webhook_id"]]
            assert event["body"] == delivery["body"]
            assert (event["event_type"], event["outcome"]) == ("video.completed", "enqueued")
            assert (
                event["video_id"]
                == upstream_to_ours[event["upstream_video_id"]]
                == upstream_to_ours[delivery["video_id"]]
            )

        # The webhooks drove it: one sync per video (the events'), one download per asset, and a reconciler
        # that never queued anything.
        jobs = rows(stack, "SELECT kind, video_id, variant, state, attempts FROM archive_jobs")
        syncs = [job for job in jobs if job["kind"] == "sync"]
        downloads = [job for job in jobs if job["kind"] == "download"]
        assert sorted(job["video_id"] for job in syncs) == sorted(videos)
        assert {job["state"] for job in syncs} == {"succeeded"}
        assert sorted((job["video_id"], job["variant"]) for job in downloads) == sorted(
            (video_id, variant) for video_id in videos for variant in VARIANTS
        )
        assert {job["state"] for job in downloads} == {"succeeded"}
        assert RECONCILER_LOG_LINE not in worker_logs(stack)

        # A copy of a delivery with a forged signature is refused; a correctly signed replay is acknowledged
        # as a duplicate and adds no row.
        replayed = deliveries[0]
        now = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": replayed["webhook_id"],
            "webhook-timestamp": str(now),
        }
        signed_at = datetime.fromtimestamp(now, tz=UTC)
        signature = Webhook(TEST_WEBHOOK_SECRET).sign(replayed["webhook_id"], signed_at, replayed["body"])
        wrong_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        forgery = Webhook(wrong_secret).sign(replayed["webhook_id"], signed_at, replayed["body"])
        webhook_url = f"{stack.api_url}/webhooks/openai"
        forged = httpx.post(webhook_url, content=replayed["body"], headers={**headers, "webhook-signature": forgery})
        assert forged.status_code == 401, forged.text
        replay = httpx.post(webhook_url, content=replayed["body"], headers={**headers, "webhook-signature": signature})
        assert replay.status_code == 200, replay.text
        assert replay.json() == {"received": True, "duplicate": True}
        assert rows(stack, "SELECT count(*) FROM webhook_events")[0][0] == count
        # From upstream's completion (whole seconds) to the asset's archive: what a webhook buys.
        lags = sorted(
            record[0]
            for record in rows(
                stack,
                "SELECT extract(epoch FROM a.updated_at - v.completed_at)::float FROM assets a "
                "JOIN videos v ON v.id = a.video_id",
            )
        )

    attempts = Counter(job["attempts"] for job in downloads)
    throughput = 3 * count / (archived - started)
    logger.info(
        "%d assets archived in %.1fs from the first create (%.1f assets/s); creates took %.1fs; "
        "archived %.1fs (median) / %.1fs (max) after upstream completion; download attempts %s; "
        "simulator content requests %s",
        3 * count,
        archived - started,
        throughput,
        all_created - started,
        lags[len(lags) // 2],
        lags[-1],
        dict(attempts),
        stats["requests"].get("download_content"),
    )


def test_reconciler_archives_every_video_before_it_expires_when_every_webhook_is_dropped(
    private_stack: Callable[..., Any],
) -> None:
    count = 30
    ttl_seconds = 30
    env = {
        **FAST_UPSTREAM,
        "VG_SIMULATOR__QUEUE_SECONDS": "0.2",
        "VG_SIMULATOR__TTL_SECONDS": str(ttl_seconds),
        "VG_WORKER__RECONCILE_INTERVAL_SECONDS": "1",
    }
    with private_stack(workers=2, **env) as stack:
        with stack.simulator() as simulator:
            simulator.patch("/_sim/faults", json={"webhook_drop_probability": 1.0}).raise_for_status()
        created = create_videos(stack, count, callers=2, prompt="webhooks lost")
        # Past the expiry of the last video to complete, nothing can be archived any more.
        wait_until_archived(stack, 3 * count, timeout=ttl_seconds + 20)

        videos = assert_archive_is_complete_and_true(stack, created)
        archived_at = rows(
            stack,
            "SELECT a.video_id, a.variant, a.updated_at, j.finished_at, v.expires_at FROM assets a "
            "JOIN videos v ON v.id = a.video_id "
            "JOIN archive_jobs j ON j.video_id = a.video_id AND j.variant = a.variant AND j.kind = 'download'",
        )
        assert len(archived_at) == 3 * count
        for row in archived_at:
            assert row["expires_at"] is not None, row
            assert row["updated_at"] < row["expires_at"], row
            assert row["finished_at"] < row["expires_at"], row

        # Upstream sent nothing: every event was dropped before its first attempt, and none reached us.
        with stack.simulator() as simulator:
            deliveries = simulator.get("/_sim/webhooks").raise_for_status().json()["data"]
        assert len(deliveries) == count
        assert {delivery["video_id"] for delivery in deliveries} == {v["upstream_id"] for v in videos.values()}
        assert Counter(delivery["status"] for delivery in deliveries) == {"dropped": count}
        assert all(delivery["attempts"] == [] for delivery in deliveries)
        assert rows(stack, "SELECT count(*) FROM webhook_events")[0][0] == 0

        # The reconciler found them: it queued the syncs, one or more per video while it polled.
        synced = {record["video_id"] for record in rows(stack, "SELECT video_id FROM archive_jobs WHERE kind = 'sync'")}
        assert synced == set(videos)
        assert RECONCILER_LOG_LINE in worker_logs(stack)
