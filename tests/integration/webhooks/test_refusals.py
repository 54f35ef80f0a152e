"""Deliveries the receiver refuses: the status, OpenAI's error shape, and no row written (docs/reliability.md §A)."""

from __future__ import annotations

import base64
import functools
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from app.core.config import Settings
from tests.support.settings import TEST_WEBHOOK_SECRET
from tests.support.webhooks import (
    WEBHOOK_PATH,
    Db,
    Rows,
    build_receiver_app,
    client_of,
    event_body,
    post,
    running,
    signed_delivery,
    video_event,
)

OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code


@pytest.fixture
async def unchanged(db: Db) -> AsyncIterator[Rows]:
    """Asserts, after the test, that neither webhook_events nor archive_jobs gained a row."""
    before = await db.rows()
    yield before
    assert await db.rows() == before


@pytest.fixture
def no_hmac(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every HMAC the library computes from now on (deliveries must be signed before requesting it)."""
    computed: list[str] = []
    sign = Webhook.sign

    def counting_sign(self: Webhook, msg_id: str, timestamp: datetime, data: str) -> str:
        computed.append(msg_id)
        return sign(self, msg_id, timestamp, data)

    monkeypatch.setattr(Webhook, "sign", counting_sign)
    return computed


class TestHeaders:
    # Row 3.
    @pytest.mark.parametrize("header", ["webhook_id", "webhook_timestamp", "webhook_signature"])
    @pytest.mark.parametrize("value", [None, ""], ids=["missing", "empty"])
    async def test_a_missing_or_empty_header_is_400(
        self, client: httpx.AsyncClient, unchanged: Rows, header: str, value: str | None
    ) -> None:
        delivery = video_event("video_x")
        response = await client.post(
            WEBHOOK_PATH, content=delivery.body, headers=delivery.with_headers(**{header: value})
        )
        assert_openai_error(response, 400, "invalid_webhook")
        assert response.json()["error"]["param"] == header.replace("_", "-")

    # Row 4.
    @pytest.mark.parametrize("value", ["hello", "1.7e9", "-1", str(2**64), "9" * 5000])
    async def test_a_malformed_timestamp_is_400(self, client: httpx.AsyncClient, unchanged: Rows, value: str) -> None:
        delivery = video_event("video_x")
        response = await client.post(
            WEBHOOK_PATH, content=delivery.body, headers=delivery.with_headers(webhook_timestamp=value)
        )
        assert_openai_error(response, 400, "invalid_webhook")

    async def test_a_fractional_timestamp_is_400_even_when_signed_as_the_library_signs_it(
        self, client: httpx.AsyncClient, unchanged: Rows
    ) -> None:
        # standardwebhooks.verify would accept this delivery: it floors the float and signs the floor.
        now = int(time.time())
        delivery = video_event("video_x", timestamp=now)
        response = await client.post(
            WEBHOOK_PATH, content=delivery.body, headers=delivery.with_headers(webhook_timestamp=f"{now}.0")
        )
        assert_openai_error(response, 400, "invalid_webhook")

    # Row 11: what makes standardwebhooks raise ValueError / binascii.Error (a 500) is a 400 here.
    @pytest.mark.parametrize(
        "signature",
        ["v1", "v1,a,b", "v1,abc", "v1,", "garbage", " ".join(["v1,AAAA"] * 10_000), "v1," + "A" * 1_000_000],
        ids=["v1", "v1,a,b", "v1,abc", "v1,", "garbage", "10k-items", "1MB"],
    )
    async def test_a_malformed_signature_list_is_400_without_any_hmac(
        self, client: httpx.AsyncClient, unchanged: Rows, no_hmac: list[str], signature: str
    ) -> None:
        delivery = video_event("video_x")
        no_hmac.clear()
        started = time.perf_counter()
        response = await client.post(
            WEBHOOK_PATH, content=delivery.body, headers=delivery.with_headers(webhook_signature=signature)
        )
        assert_openai_error(response, 400, "invalid_webhook")
        assert no_hmac == []
        assert time.perf_counter() - started < 1.0

    async def test_a_repeated_signature_header_is_400(self, client: httpx.AsyncClient, unchanged: Rows) -> None:
        delivery = video_event("video_x")
        raw = [(k.encode(), v.encode()) for k, v in delivery.headers.items()]
        raw.append((b"webhook-signature", delivery.headers["webhook-signature"].encode()))
        response = await client.post(WEBHOOK_PATH, content=delivery.body, headers=raw)
        assert_openai_error(response, 400, "invalid_webhook")


class TestAuthenticity:
    # Row 6.
    async def test_a_tampered_body_is_401(self, client: httpx.AsyncClient, unchanged: Rows) -> None:
        delivery = video_event("video_x")
        tampered = delivery.body.replace(b"video_x", b"video_y")
        response = await client.post(WEBHOOK_PATH, content=tampered, headers=delivery.headers)
        assert_openai_error(response, 401, "invalid_webhook_signature")

    async def test_a_reserialised_body_is_401(self, client: httpx.AsyncClient, unchanged: Rows) -> None:
        delivery = video_event("video_x")
        response = await client.post(
            WEBHOOK_PATH, content=json.dumps(json.loads(delivery.body)).encode(), headers=delivery.headers
        )
        assert_openai_error(response, 401)

    # Row 7.
    @pytest.mark.parametrize("header", ["webhook_id", "webhook_timestamp"])
    async def test_a_changed_id_or_timestamp_is_401(
        self, client: httpx.AsyncClient, unchanged: Rows, header: str
    ) -> None:
        delivery = video_event("video_x")
        value = "wh_other" if header == "webhook_id" else str(int(delivery.headers["webhook-timestamp"]) - 1)
        response = await client.post(
            WEBHOOK_PATH, content=delivery.body, headers=delivery.with_headers(**{header: value})
        )
        assert_openai_error(response, 401)

    # Row 8.
    async def test_a_signature_from_another_secret_is_401(self, client: httpx.AsyncClient, unchanged: Rows) -> None:
        response = await post(client, video_event("video_x", secret=OTHER_SECRET))
        assert_openai_error(response, 401, "invalid_webhook_signature")

    # Row 9.
    async def test_only_v1a_signatures_is_401(self, client: httpx.AsyncClient, unchanged: Rows) -> None:
        delivery = video_event("video_x")
        mac = delivery.headers["webhook-signature"].partition(",")[2]
        response = await client.post(
            WEBHOOK_PATH, content=delivery.body, headers=delivery.with_headers(webhook_signature=f"v1a,{mac} v0,{mac}")
        )
        assert_openai_error(response, 401)

    # Rows 5 and 25: the route uses the wall clock; ±6 min is refused both ways.
    @pytest.mark.parametrize("skew_seconds", [-360, 360, -301, 301])
    async def test_a_timestamp_past_five_minutes_is_401(
        self, client: httpx.AsyncClient, unchanged: Rows, skew_seconds: int
    ) -> None:
        response = await post(client, video_event("video_x", timestamp=int(time.time()) + skew_seconds))
        assert_openai_error(response, 401, "invalid_webhook_signature")

    # Row 12.
    async def test_a_validly_signed_body_that_is_not_utf8_is_400(
        self, client: httpx.AsyncClient, unchanged: Rows
    ) -> None:
        body = b'{"type":"video.completed","data":{"id":"\xff\xfe"}}'
        delivery = video_event("video_x")
        timestamp = delivery.headers["webhook-timestamp"]
        key = base64.b64decode(TEST_WEBHOOK_SECRET.removeprefix("whsec_"))
        mac = hmac.digest(key, f"{delivery.webhook_id}.{timestamp}.".encode() + body, "sha256")
        headers = delivery.with_headers(webhook_signature="v1," + base64.b64encode(mac).decode())
        response = await client.post(WEBHOOK_PATH, content=body, headers=headers)
        assert_openai_error(response, 400, "invalid_webhook")

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[]",
            b'{"type":"video.completed"}',
            b'{"type":"video.completed","data":{"id":7}}',
            b'{"type":"video.completed","data":{"id":"v\\u0000"}}',
            b"[" * 60_000,
        ],
        ids=["not-json", "array", "no-data", "id-not-string", "nul", "deep-nesting"],
    )
    async def test_a_validly_signed_body_that_is_not_an_event_is_400(
        self, client: httpx.AsyncClient, unchanged: Rows, body: bytes
    ) -> None:
        response = await post(client, signed_delivery(body))
        assert_openai_error(response, 400, "invalid_webhook")

    async def test_the_known_answer_vector_verifies_at_its_frozen_time(
        self, receiver_settings: Settings, unchanged: Rows
    ) -> None:
        # Row 1 through the route: TEST_WEBHOOK_SECRET is the vector's secret; the body verifies, then is
        # refused as "not an event" (400). One second past the window, it is refused as stale (401).
        vector = {
            "content-type": "application/json",
            "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        }
        assert TEST_WEBHOOK_SECRET == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        for now, status in ((1614265330, 400), (1614265330 + 301, 401)):
            app = build_receiver_app(receiver_settings, clock=functools.partial(float, now))
            async with running(app), client_of(app) as client:
                response = await client.post(WEBHOOK_PATH, content=b'{"test": 2432232314}', headers=vector)
            assert_openai_error(response, status)
            if status == 400:
                assert response.json()["error"]["param"] == "data"


class TestBodyCap:
    # Row 14: 413 before any HMAC, whatever the framing says.
    LIMIT = 64 * 1024

    async def test_a_1mib_body_is_413_before_any_hmac(
        self, client: httpx.AsyncClient, unchanged: Rows, no_hmac: list[str]
    ) -> None:
        delivery = signed_delivery(b'{"pad":"' + b"x" * (1024 * 1024) + b'"}')
        no_hmac.clear()
        response = await post(client, delivery)
        assert_openai_error(response, 413, "request_too_large")
        assert no_hmac == []

    async def test_a_lying_content_length_is_cut_off_at_the_cap(
        self, client: httpx.AsyncClient, unchanged: Rows, no_hmac: list[str]
    ) -> None:
        delivery = signed_delivery(b'{"pad":"' + b"x" * (1024 * 1024) + b'"}')
        no_hmac.clear()
        response = await client.post(
            WEBHOOK_PATH, content=delivery.body, headers={**delivery.headers, "content-length": "100"}
        )
        assert_openai_error(response, 413)
        assert no_hmac == []

    async def test_a_chunked_body_without_length_stops_being_read_at_the_cap(
        self, client: httpx.AsyncClient, unchanged: Rows, no_hmac: list[str]
    ) -> None:
        delivery = signed_delivery(b'{"pad":"' + b"x" * (1024 * 1024) + b'"}')
        pulled: list[int] = []

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(delivery.body), 4096):
                pulled.append(start)
                yield delivery.body[start : start + 4096]

        no_hmac.clear()
        response = await client.post(WEBHOOK_PATH, content=chunks(), headers=delivery.headers)
        assert "content-length" not in response.request.headers
        assert_openai_error(response, 413)
        assert no_hmac == []
        assert len(pulled) <= self.LIMIT // 4096 + 1  # the rest of the 1 MiB was never read

    async def test_an_absurd_content_length_is_413_not_500(self, client: httpx.AsyncClient, unchanged: Rows) -> None:
        delivery = video_event("video_x")
        response = await client.post(
            WEBHOOK_PATH, content=delivery.body, headers={**delivery.headers, "content-length": "9" * 40}
        )
        assert_openai_error(response, 413)

    async def test_a_body_exactly_at_the_cap_is_read_and_checked(self, client: httpx.AsyncClient, db: Db) -> None:
        base = event_body("batch.completed", "batch_1", event_id=None)
        body = base[:-1] + b" " * (self.LIMIT - len(base)) + b"}"
        assert len(body) == self.LIMIT
        delivery = signed_delivery(body)
        assert (await post(client, delivery)).status_code == 200
        over = signed_delivery(body[:-1] + b" }")
        assert (await post(client, over)).status_code == 413


class TestMethodAndMediaType:
    # Row 15.
    @pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
    async def test_another_method_is_405_in_openai_shape(
        self, client: httpx.AsyncClient, unchanged: Rows, method: str
    ) -> None:
        response = await client.request(method, WEBHOOK_PATH)
        assert_openai_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"

    @pytest.mark.parametrize(
        "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
    )
    async def test_a_body_that_is_not_declared_json_is_415(
        self, client: httpx.AsyncClient, unchanged: Rows, content_type: str | None
    ) -> None:
        delivery = video_event("video_x")
        headers = {k: v for k, v in delivery.headers.items() if k != "content-type"}
        if content_type is not None:
            headers["content-type"] = content_type
        response = await client.post(WEBHOOK_PATH, content=delivery.body, headers=headers)
        assert_openai_error(response, 415, "unsupported_media_type")

    @pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
    async def test_json_with_parameters_or_in_another_case_is_accepted(
        self, client: httpx.AsyncClient, content_type: str
    ) -> None:
        body = event_body("batch.completed", "batch_1", event_id=None)
        response = await post(client, signed_delivery(body, content_type=content_type))
        assert response.status_code == 200, response.text


class TestSecretsStayOutOfLogsAndAnswers:
    async def test_no_secret_or_signature_is_logged_or_echoed(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level("DEBUG")
        good = video_event("video_x")
        wrong = video_event("video_x", secret=OTHER_SECRET)
        stale = video_event("video_x", timestamp=int(time.time()) - 3600)
        answers = [await post(client, delivery) for delivery in (good, wrong, stale)]
        assert [a.status_code for a in answers] == [200, 401, 401]
        canaries = [TEST_WEBHOOK_SECRET.removeprefix("whsec_"), OTHER_SECRET.removeprefix("whsec_")]
        canaries += [d.headers["webhook-signature"].partition(",")[2] for d in (good, wrong, stale)]
        for canary in canaries:
            assert canary not in caplog.text
            assert all(canary not in answer.text for answer in answers)

    def test_a_signature_computed_for_the_canary_check_is_real(self) -> None:
        # Guards the test above against passing vacuously on empty signatures.
        signature = Webhook(TEST_WEBHOOK_SECRET).sign("wh_1", datetime.now(UTC), "{}")
        assert len(signature.partition(",")[2]) == 44
