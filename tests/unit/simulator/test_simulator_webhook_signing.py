"""Webhook payloads and signatures, checked with the receiver's own library and the published vector."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from app.simulator.delivery import USER_AGENT, build_event, signed_headers

SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="


class TestSignedHeaders:
    def test_matches_openai_published_test_vector(self) -> None:
        body = (
            '{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, '
            '"type": "response.completed", "data": {"id": "resp_123"}}'
        )
        headers = signed_headers(Webhook(SECRET), "wh_685c059ae39c8190af8c71ed1022a24d", 1750861210, body)
        assert headers["webhook-signature"] == "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY="
        assert headers["webhook-timestamp"] == "1750861210"

    def test_fresh_signature_verifies_with_standardwebhooks(self) -> None:
        body = json.dumps(build_event("video.completed", "video_abc", int(time.time())))
        headers = signed_headers(Webhook(SECRET), "wh_123", int(time.time()), body)
        assert Webhook(SECRET).verify(body, headers)["data"] == {"id": "video_abc"}
        assert headers["user-agent"] == USER_AGENT
        assert headers["content-type"] == "application/json"

    def test_tampered_body_fails_verification(self) -> None:
        body = json.dumps(build_event("video.completed", "video_abc", int(time.time())))
        headers = signed_headers(Webhook(SECRET), "wh_123", int(time.time()), body)
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(body.replace("video_abc", "video_xyz"), headers)

    def test_without_secret_no_signature_header_is_sent(self) -> None:
        assert "webhook-signature" not in signed_headers(None, "wh_1", 1, "{}")


class TestBuildEvent:
    def test_event_shape_carries_only_the_video_id(self) -> None:
        event = build_event("video.failed", "video_1", 1700000000)
        assert event["id"].startswith("evt_") and len(event["id"]) > 10
        assert {k: v for k, v in event.items() if k != "id"} == {
            "object": "event",
            "created_at": 1700000000,
            "type": "video.failed",
            "data": {"id": "video_1"},
        }

    def test_event_ids_are_unique(self) -> None:
        assert build_event("video.failed", "v", 1)["id"] != build_event("video.failed", "v", 1)["id"]
