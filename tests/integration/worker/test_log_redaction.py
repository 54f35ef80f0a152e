"""docs/reliability.md row 57: canary secrets never reach the logs, in a whole create → webhook → archive → presign.

Everything runs in process at DEBUG level, so every logger of the gateway (and of httpx, botocore and
SQLAlchemy underneath) is captured.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from standardwebhooks import Webhook

from app.core.logging import quiet_leaky_loggers
from tests.integration.worker.test_archive_flow import create_video, enqueue_sync, wait_upstream_completed
from tests.support.settings import TEST_WEBHOOK_SECRET
from tests.support.worker import ArchiveStack


async def test_no_secret_appears_in_any_log_line(archive_stack: ArchiveStack, caplog: pytest.LogCaptureFixture) -> None:
    stack = archive_stack
    quiet_leaky_loggers()  # as `video-gateway serve|worker` configure logging, here at its most talkative
    caplog.set_level(logging.DEBUG)
    api_key = stack.api.headers["authorization"].removeprefix("Bearer ")
    forged_signature = "v1," + secrets.token_urlsafe(32)

    # A key put in the query string by mistake, and a wrong key.
    await stack.api.get("/v1/videos", params={"api_key": api_key})
    await stack.api.get("/v1/videos", headers={"authorization": "Bearer vg_canary_wrong_" + secrets.token_hex(8)})

    video_id = await create_video(stack)
    await wait_upstream_completed(stack, video_id)

    # A forged delivery, then a valid one.
    body = json.dumps(
        {
            "id": "evt_canary",
            "object": "event",
            "created_at": 1,
            "type": "video.completed",
            "data": {"id": await stack.upstream_id(video_id)},
        }
    )
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "wh_canary",
        "webhook-timestamp": str(int(now.timestamp())),
        "content-type": "application/json",
    }
    await stack.api.post("/webhooks/openai", content=body, headers={**headers, "webhook-signature": forged_signature})
    valid_signature = Webhook(TEST_WEBHOOK_SECRET).sign("wh_canary", now, body)
    await stack.api.post("/webhooks/openai", content=body, headers={**headers, "webhook-signature": valid_signature})
    await enqueue_sync(stack, video_id)
    await stack.worker().run_until_idle()
    links = (await stack.api.get(f"/v1/videos/{video_id}/assets")).json()["data"]
    assert links, "the flow must reach the presigned URLs for this test to mean anything"
    amz_signature = parse_qs(urlsplit(links[0]["url"]).query)["X-Amz-Signature"][0]

    canaries = {
        "caller API key": api_key,
        "webhook secret": TEST_WEBHOOK_SECRET.removeprefix("whsec_"),
        "forged signature": forged_signature.removeprefix("v1,"),
        "valid signature": valid_signature.removeprefix("v1,"),
        "presigned URL signature": amz_signature,
        "S3 secret key": stack.settings.s3.secret_access_key.get_secret_value(),
        "upstream key": "Bearer " + stack.settings.upstream.api_key.get_secret_value(),
    }
    logged = caplog.text
    # The flow was logged: requests, the refused key, the webhooks and the archive all left lines.
    assert {"app.access", "app.auth.deps", "app.webhooks.service", "app.archive.jobs"} <= {
        record.name for record in caplog.records
    }
    leaked = [name for name, value in canaries.items() if value in logged]
    assert leaked == []
