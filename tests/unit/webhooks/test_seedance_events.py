"""ModelArk's unsigned task callbacks: what the check derives from a body (the dedup key, the time), what it
refuses, and how a callback becomes an event about one task."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.core.config import UpstreamSettings
from app.core.errors import WebhookMalformed
from app.webhooks.kinds import check_profile_secrets, webhook_kind
from app.webhooks.seedance import SEEDANCE_VIDEO_EVENTS, build_seedance_verifier, parse_seedance_event
from app.webhooks.verify import SignedDelivery

TASK = "cgt-20261129101500-a1b2c"
NOW = 1_795_000_000.7


def callback(**fields: Any) -> bytes:
    document = {
        "id": TASK,
        "model": "seedance-1-0-pro-250528",
        "status": "succeeded",
        "created_at": 1_795_000_000,
        "updated_at": 1_795_000_060,
        "service_tier": "default",
        "execution_expires_after": 172800,
        **fields,
    }
    return json.dumps(document).encode()


async def checked(body: bytes, headers: dict[str, str] | None = None) -> SignedDelivery:
    verifier = build_seedance_verifier(UpstreamSettings(kind="seedance"), [], lambda: NOW)
    return await verifier.check(body, headers or {"content-type": "application/json"})


class TestCheck:
    async def test_the_delivery_is_keyed_by_task_and_status_and_dated_now(self) -> None:
        body = callback()
        delivery = await checked(body)
        assert delivery == SignedDelivery(
            webhook_id=f"seedance:{TASK}:succeeded", timestamp=1_795_000_000, payload=body.decode()
        )

    async def test_a_retry_of_the_same_status_has_the_same_key_and_a_new_status_a_new_one(self) -> None:
        first = await checked(callback(status="running"))
        retried = await checked(callback(status="running", updated_at=1_795_000_999))
        finished = await checked(callback(status="succeeded"))
        assert first.webhook_id == retried.webhook_id
        assert finished.webhook_id != first.webhook_id

    async def test_sender_headers_change_nothing_since_nothing_is_signed(self) -> None:
        headers = {"webhook-id": "msg_forged", "webhook-signature": "v1,AAAA", "webhook-timestamp": "1"}
        delivery = await checked(callback(), headers)
        assert (delivery.webhook_id, delivery.timestamp) == (f"seedance:{TASK}:succeeded", 1_795_000_000)

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"\xff\xfe", id="not-utf8"),
            pytest.param(b"", id="empty"),
            pytest.param(b"not json", id="not-json"),
            pytest.param(b"[]", id="array"),
            pytest.param(b'"cgt-1"', id="string"),
            pytest.param(b"[" * 70_000, id="deep-nesting"),
            pytest.param(b'{"id":"a","id":"b","status":"queued"}', id="duplicate-key"),
            pytest.param(json.dumps({"status": "queued"}).encode(), id="no-id"),
            pytest.param(callback(id=7), id="id-not-string"),
            pytest.param(callback(id=""), id="id-empty"),
            pytest.param(callback(id="../files/x"), id="id-path"),
            pytest.param(callback(id="cgt 1"), id="id-space"),
            pytest.param(callback(id="c" * 101), id="id-too-long"),
            pytest.param(callback(id="cgt-1\u0000"), id="id-nul"),
            pytest.param(json.dumps({"id": TASK}).encode(), id="no-status"),
            pytest.param(callback(status="SUCCEEDED"), id="status-uppercase"),
            pytest.param(callback(status="s" * 33), id="status-too-long"),
            pytest.param(callback(status="succeeded:x"), id="status-with-separator"),
            pytest.param(callback(status=None), id="status-null"),
        ],
    )
    async def test_anything_but_a_well_formed_task_object_is_malformed(self, body: bytes) -> None:
        with pytest.raises(WebhookMalformed):
            await checked(body)


class TestParse:
    @pytest.mark.parametrize("status", ["queued", "running", "succeeded", "failed", "cancelled", "expired"])
    async def test_each_status_is_a_video_event_about_the_task(self, status: str) -> None:
        delivery = await checked(callback(status=status))
        event = parse_seedance_event(delivery)
        assert (event.type, event.object_id, event.event_id) == (f"task.{status}", TASK, None)
        assert event.webhook_id == delivery.webhook_id and event.body == delivery.payload
        assert event.type in SEEDANCE_VIDEO_EVENTS

    async def test_an_unknown_status_is_recorded_as_an_event_nobody_acts_on(self) -> None:
        event = parse_seedance_event(await checked(callback(status="paused")))
        assert event.type == "task.paused" and event.type not in SEEDANCE_VIDEO_EVENTS

    def test_the_parser_checks_the_body_itself(self) -> None:
        with pytest.raises(WebhookMalformed):
            parse_seedance_event(
                SignedDelivery(webhook_id="x", timestamp=1, payload='{"id": "../x", "status": "queued"}')
            )


class TestKind:
    def test_the_receiver_uses_these_parts_and_needs_no_secret(self) -> None:
        kind = webhook_kind("seedance")
        assert kind.parse is parse_seedance_event
        assert kind.video_events == SEEDANCE_VIDEO_EVENTS
        assert kind.uses_secrets is False
        check_profile_secrets("seedance", [])  # no whsec_ secret to configure: starting must not fail
