"""The webhook tap's pure parts: what it redacts, and how it names an answer's outcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from app.console.tap import MAX_DELIVERIES, DeliveryLog, TappedDelivery, judge, redact_signature, redacted_headers


def test_signatures_keep_their_versions_and_lose_their_macs() -> None:
    assert redact_signature("v1,abc= v1,def= v1a,xyz") == "v1,[redacted] v1,[redacted] v1a,[redacted]"
    assert redact_signature("") == "[redacted]"


def test_credentials_are_hidden_and_long_values_cut() -> None:
    shown = dict(
        redacted_headers(
            [
                (b"Authorization", b"Bearer sk-live"),
                (b"cookie", b"vg_console=v1.1.a.b"),
                (b"webhook-signature", b"v1,SECRETMAC"),
                (b"user-agent", b"x" * 1000),
            ]
        )
    )
    assert shown["authorization"] == shown["cookie"] == "[redacted]"
    assert shown["webhook-signature"] == "v1,[redacted]"
    assert len(shown["user-agent"]) < 400


@pytest.mark.parametrize(
    ("status", "answer", "outcome", "reason_has"),
    [
        (200, {"received": True, "duplicate": False}, "verified", None),
        (200, {"received": True, "duplicate": True}, "duplicate", None),
        (
            401,
            {"error": {"code": "invalid_webhook_signature", "message": "No match.", "param": "webhook-signature"}},
            "rejected",
            "401 invalid_webhook_signature: No match. (webhook-signature)",
        ),
        (413, {"error": {"code": None, "message": "Too large."}}, "rejected", "413 error: Too large."),
        (503, {"error": {"code": "service_unavailable", "message": "Retry."}}, "error", "503 service_unavailable"),
    ],
)
def test_the_answer_names_the_outcome(
    status: int, answer: dict[str, object], outcome: str, reason_has: str | None
) -> None:
    judged, reason = judge(status, json.dumps(answer).encode())
    assert judged == outcome
    assert (reason is None) if reason_has is None else (reason is not None and reason_has in reason)


def test_a_non_json_answer_still_counts_as_rejected() -> None:
    assert judge(400, b"<html>") == ("rejected", "400 error: no message")


def test_the_log_is_bounded_and_newest_first() -> None:
    log = DeliveryLog()
    for index in range(MAX_DELIVERIES + 5):
        log.add(TappedDelivery(datetime.now(UTC), "/webhooks/openai", 401, "rejected", None, [], f"wh_{index}"))
    recent = log.recent()
    assert len(recent) == MAX_DELIVERIES
    assert recent[0].webhook_id == f"wh_{MAX_DELIVERIES + 4}"
    assert log.recent(outcome="verified") == []


def test_the_tap_hides_what_the_logs_hide() -> None:
    """One rule set (app/core/logging.py): a header named like a secret is hidden whole, whatever its name's
    provider, and a credential inside any other value is masked."""
    shown = dict(
        redacted_headers(
            [
                (b"x-fal-webhook-signature", b"0a1b2c"),
                (b"x-amz-security-token", b"FwoGZX"),
                (b"referer", b"https://sender.test/hooks?token=s3cr3t&page=2"),
            ]
        )
    )
    assert shown["x-fal-webhook-signature"] == shown["x-amz-security-token"] == "[redacted]"
    assert "s3cr3t" not in shown["referer"] and "page=2" in shown["referer"]
