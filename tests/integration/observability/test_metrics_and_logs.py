"""`/metrics` and the log trail, driven through the real paths in process (API, receiver, worker, S3).

Metrics are process-wide counters, so every check compares a sample before and after the action.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from standardwebhooks import Webhook

from app.callbacks import delivery as callbacks_delivery
from app.models import Video
from tests.integration.worker.test_archive_flow import assets, create_video, wait_upstream_completed
from tests.support.json_logs import capture_json_logs, json_records
from tests.support.settings import TEST_WEBHOOK_SECRET
from tests.support.worker import ArchiveStack

Labels = dict[str, str]


async def scrape(api: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def webhook(body: dict[str, Any], *, secret: str = TEST_WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body)
    webhook_id = f"wh_{secrets.token_hex(8)}"
    now = datetime.now(UTC)
    return raw.encode(), {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, raw),
    }


def completed_event(upstream_id: str) -> dict[str, Any]:
    return {
        "id": f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "created_at": int(time.time()),
        "type": "video.completed",
        "data": {"id": upstream_id},
    }


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record of the process as the production formatter writes it, for one test."""
    with capture_json_logs() as stream:
        yield stream


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return json_records(stream)


async def test_a_webhook_request_id_follows_its_job_through_the_worker_and_every_archive_metric_moves(
    archive_stack: ArchiveStack, json_log: io.StringIO
) -> None:
    stack = archive_stack
    video_id = await create_video(stack, prompt="observe me")
    # Not allow-listed, so the callback attempt is refused (and counted) without any network I/O.
    async with stack.database.sessionmaker.begin() as session:
        await session.execute(update(Video).where(Video.id == video_id).values(callback_url="http://192.0.2.1/hook"))
    await wait_upstream_completed(stack, video_id)
    before = await scrape(stack.api)

    request_id = f"req-{secrets.token_hex(6)}"
    body, headers = webhook(completed_event(await stack.upstream_id(video_id)))
    response = await stack.api.post("/webhooks/openai", content=body, headers={**headers, "x-request-id": request_id})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id
    await stack.worker().run_until_idle()
    assert await callbacks_delivery.deliver_due(stack.context) >= 1
    after = await scrape(stack.api)

    # The log trail: the receiver's lines and the worker's lines for the sync job and the downloads it queued.
    lines = parsed(json_log)
    tagged = [line for line in lines if line.get("request_id") == request_id]
    assert any(line["logger"] == "app.access" and line["route"] == "/webhooks/openai" for line in tagged)
    assert any(line["logger"] == "app.webhooks.service" and "enqueued" in line["event"] for line in tagged)
    ours = [line for line in lines if line.get("video_id") == video_id and line["logger"].startswith("app.archive")]
    assert {line.get("job_kind") for line in ours} == {"sync", "download"}
    assert all(line.get("request_id") == request_id for line in ours), ours
    assert sum(line["event"].startswith(f"archived {video_id}") for line in tagged) == 3

    # Webhooks, the archive, callbacks, queue depth, request latency: each moved.
    delivered = value(after, "vg_webhook_deliveries_total", profile="default", outcome="enqueued", reason="")
    assert (
        delivered == value(before, "vg_webhook_deliveries_total", profile="default", outcome="enqueued", reason="") + 1
    )
    # The queue is shared with the run's other tests, and this worker may archive their leftovers too: at least.
    archived = await assets(stack, video_id)
    for variant, asset in archived.items():
        assert asset.state == "archived" and asset.bytes
        written = value(after, "vg_archive_bytes_total", variant=variant) - value(
            before, "vg_archive_bytes_total", variant=variant
        )
        assert written >= asset.bytes
        slack = "vg_archive_deadline_slack_seconds_count"
        assert value(after, slack, variant=variant) >= value(before, slack, variant=variant) + 1
    completion = "vg_archive_completion_to_archived_seconds_count"
    assert value(after, completion) >= value(before, completion) + 1
    refused = value(after, "vg_callback_attempts_total", outcome="refused", state="pending")
    assert refused > value(before, "vg_callback_attempts_total", outcome="refused", state="pending")
    assert ("vg_archive_jobs", (("state", "succeeded"),)) in after and value(
        after, "vg_archive_jobs", state="succeeded"
    ) >= 4
    latency = "vg_http_request_duration_seconds_count"
    labels = {"method": "POST", "route": "/webhooks/openai", "status_class": "2xx"}
    assert value(after, latency, **labels) == value(before, latency, **labels) + 1


async def test_the_route_label_is_the_template_not_the_path(archive_stack: ArchiveStack) -> None:
    stack = archive_stack
    video_id = await create_video(stack)
    assert (await stack.api.get(f"/v1/videos/{video_id}")).status_code == 200
    assert (await stack.api.get("/v1/videos/video_doesnotexist")).status_code == 404
    assert (await stack.api.get(f"/nothing/here/{video_id}")).status_code == 404
    text = (await stack.api.get("/metrics")).text
    assert video_id not in text and "video_doesnotexist" not in text
    samples = await scrape(stack.api)
    count = "vg_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route="/v1/videos/{video_id}", status_class="2xx") >= 1
    assert value(samples, count, method="GET", route="/v1/videos/{video_id}", status_class="4xx") >= 1
    assert value(samples, count, method="GET", route="<unmatched>", status_class="4xx") >= 1


async def test_a_rejected_webhook_is_counted_with_its_reason(archive_stack: ArchiveStack) -> None:
    stack = archive_stack
    before = await scrape(stack.api)
    body, headers = webhook(completed_event("video_up_unknown"), secret="whsec_" + "QUJD" * 8)
    assert (await stack.api.post("/webhooks/openai", content=body, headers=headers)).status_code == 401
    stale = {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    assert (await stack.api.post("/webhooks/openai", content=body, headers=stale)).status_code == 401
    assert (
        await stack.api.post("/webhooks/openai", content=body, headers={**headers, "content-type": "text/plain"})
    ).status_code == 415
    body, headers = webhook(completed_event(f"video_up_{secrets.token_hex(6)}"))
    assert (await stack.api.post("/webhooks/openai", content=body, headers=headers)).status_code == 200  # an orphan
    assert (await stack.api.post("/webhooks/openai", content=body, headers=headers)).status_code == 200  # again
    after = await scrape(stack.api)

    def delta(outcome: str, reason: str = "") -> float:
        labels = {"profile": "default", "outcome": outcome, "reason": reason}
        return value(after, "vg_webhook_deliveries_total", **labels) - value(
            before, "vg_webhook_deliveries_total", **labels
        )

    assert delta("rejected", "signature_mismatch") == 1
    assert delta("rejected", "timestamp_out_of_window") == 1
    assert delta("rejected", "not_json") == 1
    assert delta("orphan") == 1 and delta("duplicate") == 1


async def test_upstream_errors_are_counted_by_profile_and_status(archive_stack: ArchiveStack) -> None:
    stack = archive_stack
    video_id = await create_video(stack)
    before = await scrape(stack.api)
    await stack.set_faults(server_error_next=2, server_error_status=502, burst_routes=["retrieve_video"])
    assert (await stack.api.get(f"/v1/videos/{video_id}")).status_code == 200  # the third attempt answers
    after = await scrape(stack.api)
    errors = "vg_upstream_errors_total"
    assert (
        value(after, errors, profile="default", status="502")
        == value(before, errors, profile="default", status="502") + 2
    )
