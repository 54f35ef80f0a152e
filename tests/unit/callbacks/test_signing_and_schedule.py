"""Callback signatures (Standard Webhooks, several during a rotation) and the retry schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from app.callbacks.delivery import callback_retry_delay, signature_headers
from app.callbacks.service import new_secret
from app.core.config import CallbackSettings


class TestSignatureHeaders:
    def test_a_receiver_verifies_the_callback_with_the_callers_secret(self) -> None:
        secret = new_secret()
        body = '{"id":"evt_1","type":"video.archived"}'
        headers = signature_headers("msg_1", body, [secret])
        assert Webhook(secret).verify(body, headers) == {"id": "evt_1", "type": "video.archived"}
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(body, headers)

    def test_during_a_rotation_both_secrets_verify(self) -> None:
        current, previous = new_secret(), new_secret()
        body = "{}"
        headers = signature_headers("msg_2", body, [current, previous])
        assert headers["webhook-signature"].count("v1,") == 2
        Webhook(current).verify(body, headers)
        Webhook(previous).verify(body, headers)

    def test_the_known_answer_vector_of_the_contract(self) -> None:
        body = (
            '{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, '
            '"type": "response.completed", "data": {"id": "resp_123"}}'
        )
        headers = signature_headers(
            "wh_685c059ae39c8190af8c71ed1022a24d",
            body,
            ["whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="],
            now=datetime.fromtimestamp(1750861210, UTC),
        )
        assert headers == {
            "webhook-id": "wh_685c059ae39c8190af8c71ed1022a24d",
            "webhook-timestamp": "1750861210",
            "webhook-signature": "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY=",
        }

    def test_secrets_are_whsec_with_32_random_bytes(self) -> None:
        secret = new_secret()
        assert secret.startswith("whsec_") and secret != new_secret()
        Webhook(secret)  # parses


class TestRetrySchedule:
    def test_the_default_is_the_standard_webhooks_schedule(self) -> None:
        settings = CallbackSettings(retry_jitter_ratio=0)
        delays = [callback_retry_delay(attempt, settings) for attempt in range(1, 9)]
        assert delays == [5, 300, 1800, 7200, 18000, 36000, 36000, None]

    def test_the_last_delay_repeats_when_more_attempts_than_delays_are_allowed(self) -> None:
        settings = CallbackSettings(retry_schedule_seconds=[1, 2], max_attempts=5, retry_jitter_ratio=0)
        assert [callback_retry_delay(attempt, settings) for attempt in range(1, 6)] == [1, 2, 2, 2, None]

    def test_jitter_only_stretches_a_delay_by_up_to_the_ratio(self) -> None:
        settings = CallbackSettings(retry_jitter_ratio=0.1)
        rng = random.Random(7)
        delays = [callback_retry_delay(2, settings, rng=rng) for _ in range(200)]
        assert all(300 <= delay <= 330 for delay in delays if delay is not None)
        assert len(set(delays)) > 1
