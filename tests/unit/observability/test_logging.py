"""Structured log lines: JSON per record (stdlib calls included), the bound request id, and redaction."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from app.core.logging import (
    REDACTED,
    accept_request_id,
    quiet_leaky_loggers,
    redact_secrets,
    redact_text,
)
from tests.support.json_logs import capture_json_logs, json_records

PRESIGNED = (
    "https://s3.example/bucket/videos/v/video.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261125%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261125T000000Z"
    "&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef0123456789abcdef"
)


def redact(event: dict[str, Any]) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(event)))


class TestRedactionProcessor:
    @pytest.mark.parametrize(
        "key",
        [
            "authorization",
            "Authorization",
            "api_key",
            "API-Key",
            "secret",
            "secret_access_key",
            "webhook_secret",
            "signature",
            "webhook-signature",
            "token",
            "access_token",
            "X-Amz-Signature",
            "password",
        ],
    )
    def test_masks_the_value_of_a_sensitive_key(self, key: str) -> None:
        assert redact({"event": "x", key: "s3cr3t-value"})[key] == REDACTED

    def test_masks_sensitive_keys_inside_nested_values(self) -> None:
        event = redact(
            {"event": "x", "headers": {"Authorization": "Bearer abc", "accept": "*/*"}, "items": [{"token": "t"}]}
        )
        assert event["headers"] == {"Authorization": REDACTED, "accept": "*/*"}
        assert event["items"] == [{"token": REDACTED}]

    def test_masks_the_signature_and_credential_of_a_presigned_url_and_keeps_the_rest(self) -> None:
        event = redact({"event": f"presigned {PRESIGNED}", "url": PRESIGNED})
        for text in (event["event"], event["url"]):
            assert "0123456789abcdef" not in text and "AKIAEXAMPLE" not in text
            assert f"X-Amz-Signature={REDACTED}" in text and f"X-Amz-Credential={REDACTED}" in text
            assert "X-Amz-Expires=900" in text and text.startswith(
                ("https://s3.example/bucket/videos/v/video.mp4", "presigned")
            )

    @pytest.mark.parametrize(
        ("raw", "leaked"),
        [
            ("GET /v1/videos?api_key=vg_live_123&limit=2", "vg_live_123"),
            ("GET /v1/videos?limit=2&token=tok_999", "tok_999"),
            ("header Authorization: Bearer vg_abcdef.123", "vg_abcdef.123"),
            ("postgresql+asyncpg://app:hunter2@db:5432/vg", "hunter2"),
            ("secret is whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ],
    )
    def test_masks_credentials_inside_free_text(self, raw: str, leaked: str) -> None:
        assert leaked not in redact_text(raw)
        assert leaked not in redact({"event": raw})["event"]

    def test_leaves_ordinary_values_alone(self) -> None:
        event = {
            "event": "archived video_1 thumbnail: 1234 bytes",
            "variant": "video",
            "bytes": 12,
            "route": "/v1/videos",
        }
        assert redact(event) == event


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """A handler with the production formatter on the root logger, for the length of a test."""
    with capture_json_logs() as stream:
        yield stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return json_records(stream)


class TestJsonLines:
    def test_a_stdlib_call_with_arguments_is_one_json_object_with_the_bound_request_id(
        self, json_lines: io.StringIO
    ) -> None:
        with structlog.contextvars.bound_contextvars(request_id="req-123"):
            logging.getLogger("app.test").info("archived %s %s: %d bytes", "video_1", "video", 42)
        [line] = lines(json_lines)
        assert line["event"] == "archived video_1 video: 42 bytes"
        assert line["request_id"] == "req-123"
        assert line["level"] == "info" and line["logger"] == "app.test" and line["timestamp"].endswith("Z")

    def test_extra_fields_are_kept_and_context_does_not_outlive_its_block(self, json_lines: io.StringIO) -> None:
        with structlog.contextvars.bound_contextvars(request_id="req-1"):
            pass
        logging.getLogger("app.test").info("hello", extra={"route": "/v1/videos/{video_id}"})
        [line] = lines(json_lines)
        assert line["route"] == "/v1/videos/{video_id}" and "request_id" not in line

    def test_secrets_in_a_message_or_a_traceback_are_masked(self, json_lines: io.StringIO) -> None:
        logger = logging.getLogger("app.test")
        logger.info("fetched %s", PRESIGNED)
        try:
            raise RuntimeError("connect failed for Bearer sk-live-999 at ?api_key=vg_leak")
        except RuntimeError:
            logger.exception("upstream call failed")
        text = json_lines.getvalue()
        assert "0123456789abcdef" not in text and "sk-live-999" not in text and "vg_leak" not in text
        assert "RuntimeError" in lines(json_lines)[1]["exception"]

    def test_a_structlog_logger_renders_to_the_same_lines(self, json_lines: io.StringIO) -> None:
        structlog.configure(
            processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        try:
            structlog.get_logger("app.test").info("job done", api_key="vg_secret", job_id=7)
        finally:
            structlog.reset_defaults()
        [line] = lines(json_lines)
        assert line["event"] == "job done" and line["api_key"] == REDACTED and line["job_id"] == 7


class TestRequestIds:
    @pytest.mark.parametrize("incoming", ["abc", "req-1.2_3:4", "a" * 64, "7f0c2b0e-1d5e-4c4f-9d0e-9f0b1a2c3d4e"])
    def test_a_short_safe_incoming_id_is_kept(self, incoming: str) -> None:
        assert accept_request_id(incoming) == incoming

    @pytest.mark.parametrize("incoming", [None, "", "a" * 65, "has space", "new\nline", 'quote"', "é"])
    def test_anything_else_gets_a_new_id(self, incoming: str | None) -> None:
        generated = accept_request_id(incoming)
        assert generated != incoming and len(generated) == 32 and generated.isalnum()


def test_leaky_loggers_stay_at_warning() -> None:
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    quiet_leaky_loggers()
    assert (
        logging.getLogger("botocore").level == logging.WARNING and logging.getLogger("httpx").level == logging.WARNING
    )
