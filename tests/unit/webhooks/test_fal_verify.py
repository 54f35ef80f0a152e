"""fal's webhook signatures (Ed25519 over request id, user id, timestamp and the body's SHA-256; keys from a
JWKS) and the key set's cache: what is accepted, what is 400 / 401 / 503, and how often the JWKS is fetched
whatever arrives. The JWKS is served by a scripted transport; the clock is ours to move."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.core.config import UpstreamSettings
from app.core.errors import ServiceUnavailable, WebhookMalformed, WebhookSignatureInvalid
from app.webhooks.fal import (
    FAL_VIDEO_EVENTS,
    REFRESH_INTERVAL_SECONDS,
    FalVerifier,
    build_fal_verifier,
    parse_fal_event,
    parse_jwks,
)
from app.webhooks.kinds import webhook_kind

NOW = 1_800_000_000.0
REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
JWKS_URL = "https://keys.fal.test/.well-known/jwks.json"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Jwks:
    """A JWKS endpoint whose keys (or outage) a test sets; counts fetches."""

    def __init__(self, *keys: Ed25519PrivateKey) -> None:
        self.keys = list(keys)
        self.down = False
        self.fetches = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.down:
            return httpx.Response(503)
        return httpx.Response(200, json={"keys": [jwk(key) for key in self.keys]})


def jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def body(status: str = "OK", request_id: str = REQUEST_ID) -> bytes:
    payload: dict[str, Any] = {"video": {"url": "https://v3.fal.media/files/x/output.mp4"}}
    return json.dumps(
        {"request_id": request_id, "gateway_request_id": request_id, "status": status, "payload": payload}
    ).encode()


def signed(
    key: Ed25519PrivateKey, raw: bytes, *, timestamp: float = NOW, request_id: str = REQUEST_ID, user_id: str = "u-1"
) -> dict[str, str]:
    stamp = str(int(timestamp))
    message = f"{request_id}\n{user_id}\n{stamp}\n{hashlib.sha256(raw).hexdigest()}".encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": stamp,
        "X-Fal-Webhook-Signature": key.sign(message).hex(),
        "content-type": "application/json",
    }


def verifier_for(jwks: Jwks, clock: Clock | None = None) -> FalVerifier:
    return FalVerifier(JWKS_URL, clock=clock or Clock(), transport=httpx.MockTransport(jwks.handle))


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


class TestSignature:
    async def test_a_valid_signature_is_accepted_and_read_as_an_event_about_the_request(
        self, key: Ed25519PrivateKey
    ) -> None:
        raw = body()
        delivery = await verifier_for(Jwks(key)).check(raw, signed(key, raw))
        assert delivery.webhook_id == f"{REQUEST_ID}:OK"
        assert delivery.payload == raw.decode()
        event = parse_fal_event(delivery)
        assert (event.type, event.object_id, event.event_id) == ("OK", REQUEST_ID, None)
        assert event.type in FAL_VIDEO_EVENTS

    async def test_a_tampered_body_is_401(self, key: Ed25519PrivateKey) -> None:
        headers = signed(key, body())
        with pytest.raises(WebhookSignatureInvalid):
            await verifier_for(Jwks(key)).check(body(status="ERROR"), headers)

    @pytest.mark.parametrize(
        ("header", "value"),
        [("X-Fal-Webhook-Request-Id", "other-request"), ("X-Fal-Webhook-User-Id", "someone-else")],
    )
    async def test_every_signed_header_is_covered(self, key: Ed25519PrivateKey, header: str, value: str) -> None:
        raw = body()
        headers = {**signed(key, raw), header: value}
        with pytest.raises(WebhookSignatureInvalid):
            await verifier_for(Jwks(key)).check(raw, headers)

    @pytest.mark.parametrize(("offset", "accepted"), [(-301, False), (301, False), (-300, True), (300, True)])
    async def test_the_timestamp_must_be_within_300_seconds(
        self, key: Ed25519PrivateKey, offset: int, accepted: bool
    ) -> None:
        raw = body()
        verifier = verifier_for(Jwks(key))
        headers = signed(key, raw, timestamp=NOW + offset)
        if accepted:
            await verifier.check(raw, headers)
            return
        with pytest.raises(WebhookSignatureInvalid) as caught:
            await verifier.check(raw, headers)
        assert caught.value.param == "x-fal-webhook-timestamp"

    async def test_a_stale_delivery_is_refused_before_any_key_is_fetched(self, key: Ed25519PrivateKey) -> None:
        jwks = Jwks(key)
        raw = body()
        with pytest.raises(WebhookSignatureInvalid):
            await verifier_for(jwks).check(raw, signed(key, raw, timestamp=NOW - 3600))
        assert jwks.fetches == 0

    @pytest.mark.parametrize(
        ("change", "param"),
        [
            ({"X-Fal-Webhook-Signature": None}, "x-fal-webhook-signature"),
            ({"X-Fal-Webhook-Signature": "zz" * 64}, "x-fal-webhook-signature"),
            ({"X-Fal-Webhook-Signature": "ab" * 32}, "x-fal-webhook-signature"),
            ({"X-Fal-Webhook-Timestamp": "1.5e9"}, "x-fal-webhook-timestamp"),
            ({"X-Fal-Webhook-Request-Id": "a\nb"}, "x-fal-webhook-request-id"),
            ({"X-Fal-Webhook-User-Id": "with space"}, "x-fal-webhook-user-id"),
            ({"X-Fal-Webhook-User-Id": None}, "x-fal-webhook-user-id"),
        ],
    )
    async def test_malformed_headers_are_400_naming_the_header(
        self, key: Ed25519PrivateKey, change: dict[str, str | None], param: str
    ) -> None:
        raw = body()
        headers = {name: value for name, value in {**signed(key, raw), **change}.items() if value is not None}
        jwks = Jwks(key)
        with pytest.raises(WebhookMalformed) as caught:
            await verifier_for(jwks).check(raw, headers)
        assert caught.value.param == param
        assert jwks.fetches == 0

    async def test_a_repeated_header_is_400(self, key: Ed25519PrivateKey) -> None:
        raw = body()
        items = [*signed(key, raw).items(), ("x-fal-webhook-timestamp", str(int(NOW)))]

        class Repeating(dict[str, str]):
            def items(self) -> Any:  # Starlette's Headers.items() keeps repeated names
                return items

        with pytest.raises(WebhookMalformed):
            await verifier_for(Jwks(key)).check(raw, Repeating(items))

    async def test_another_status_is_recorded_as_an_event_that_is_not_about_a_video(
        self, key: Ed25519PrivateKey
    ) -> None:
        raw = body(status="QUEUED")
        event = parse_fal_event(await verifier_for(Jwks(key)).check(raw, signed(key, raw)))
        assert event.type == "QUEUED" and event.type not in FAL_VIDEO_EVENTS

    async def test_a_body_about_another_request_than_the_signed_one_is_400(self, key: Ed25519PrivateKey) -> None:
        raw = body(request_id="another-request")
        delivery = await verifier_for(Jwks(key)).check(raw, signed(key, raw))
        with pytest.raises(WebhookMalformed):
            parse_fal_event(delivery)

    async def test_a_retry_with_a_new_timestamp_dedupes_but_the_error_event_does_not(
        self, key: Ed25519PrivateKey
    ) -> None:
        clock = Clock()
        verifier = verifier_for(Jwks(key), clock)
        raw = body()
        first = await verifier.check(raw, signed(key, raw))
        clock.now += 200
        retry = await verifier.check(raw, signed(key, raw, timestamp=clock.now))
        failed = await verifier.check(body("ERROR"), signed(key, body("ERROR"), timestamp=clock.now))
        assert first.webhook_id == retry.webhook_id != failed.webhook_id
        assert failed.webhook_id == f"{REQUEST_ID}:ERROR"


class TestKeySet:
    async def test_an_unknown_key_fetches_the_set_once_more_then_is_401(self, key: Ed25519PrivateKey) -> None:
        clock = Clock()
        jwks = Jwks(key)
        verifier = verifier_for(jwks, clock)
        raw = body()
        await verifier.check(raw, signed(key, raw))
        assert jwks.fetches == 1
        clock.now += REFRESH_INTERVAL_SECONDS
        forger = Ed25519PrivateKey.generate()
        with pytest.raises(WebhookSignatureInvalid):
            await verifier.check(raw, signed(forger, raw, timestamp=clock.now))
        assert jwks.fetches == 2

    async def test_a_flood_of_forgeries_fetches_the_set_at_most_once_per_interval(self, key: Ed25519PrivateKey) -> None:
        clock = Clock()
        jwks = Jwks(key)
        verifier = verifier_for(jwks, clock)
        raw = body()
        forgers = [Ed25519PrivateKey.generate() for _ in range(5)]
        for round_number in range(3):
            for index in range(60):
                with pytest.raises(WebhookSignatureInvalid):
                    await verifier.check(raw, signed(forgers[index % 5], raw, timestamp=clock.now))
                clock.now += 0.5  # 30 s of deliveries: half an interval
            assert jwks.fetches <= round_number + 1
        assert jwks.fetches <= 2
        # The genuine key still verifies throughout, from the cache.
        await verifier.check(raw, signed(key, raw, timestamp=clock.now))

    async def test_a_jwks_outage_with_nothing_cached_is_503_and_not_fetched_per_delivery(
        self, key: Ed25519PrivateKey
    ) -> None:
        clock = Clock()
        jwks = Jwks(key)
        jwks.down = True
        verifier = verifier_for(jwks, clock)
        raw = body()
        for _ in range(10):
            with pytest.raises(ServiceUnavailable) as caught:
                await verifier.check(raw, signed(key, raw, timestamp=clock.now))
        assert caught.value.status_code == 503
        assert caught.value.headers["Retry-After"]
        assert jwks.fetches == 1
        jwks.down = False
        clock.now += REFRESH_INTERVAL_SECONDS
        await verifier.check(raw, signed(key, raw, timestamp=clock.now))
        assert jwks.fetches == 2

    async def test_an_unreachable_jwks_host_is_503_too(self, key: Ed25519PrivateKey) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        verifier = FalVerifier(JWKS_URL, clock=Clock(), transport=httpx.MockTransport(refuse))
        raw = body()
        with pytest.raises(ServiceUnavailable):
            await verifier.check(raw, signed(key, raw))

    @pytest.mark.parametrize(
        "answer",
        [
            httpx.Response(302, headers={"location": "https://elsewhere.test/jwks.json"}),
            httpx.Response(200, content=b"{" + b" " * (70 * 1024) + b"}"),
            httpx.Response(200, content=b"not json"),
            httpx.Response(200, json={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "!!"}]}),
        ],
    )
    async def test_a_key_set_that_is_not_usable_is_503(self, key: Ed25519PrivateKey, answer: httpx.Response) -> None:
        seen: list[str] = []

        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            return answer

        verifier = FalVerifier(JWKS_URL, clock=Clock(), transport=httpx.MockTransport(handle))
        raw = body()
        with pytest.raises(ServiceUnavailable):
            await verifier.check(raw, signed(key, raw))
        assert seen == [JWKS_URL]  # a redirect is not followed

    async def test_a_rotated_key_is_found_with_one_fetch_and_the_old_one_keeps_working(
        self, key: Ed25519PrivateKey
    ) -> None:
        clock = Clock()
        jwks = Jwks(key)
        verifier = verifier_for(jwks, clock)
        raw = body()
        await verifier.check(raw, signed(key, raw))
        new_key = Ed25519PrivateKey.generate()
        jwks.keys = [new_key, key]  # fal publishes the new key beside the old one
        clock.now += REFRESH_INTERVAL_SECONDS
        await verifier.check(raw, signed(new_key, raw, timestamp=clock.now))
        await verifier.check(raw, signed(key, raw, timestamp=clock.now))
        assert jwks.fetches == 2

    async def test_keys_older_than_a_day_are_fetched_again_and_a_withdrawn_key_stops_working(
        self, key: Ed25519PrivateKey
    ) -> None:
        clock = Clock()
        jwks = Jwks(key)
        verifier = verifier_for(jwks, clock)
        raw = body()
        await verifier.check(raw, signed(key, raw))
        new_key = Ed25519PrivateKey.generate()
        jwks.keys = [new_key]
        clock.now += 24 * 3600
        with pytest.raises(WebhookSignatureInvalid):
            await verifier.check(raw, signed(key, raw, timestamp=clock.now))
        assert jwks.fetches == 2

    async def test_keys_past_their_age_are_not_trusted_when_the_refresh_fails(self, key: Ed25519PrivateKey) -> None:
        clock = Clock()
        jwks = Jwks(key)
        verifier = verifier_for(jwks, clock)
        raw = body()
        await verifier.check(raw, signed(key, raw))
        jwks.down = True
        clock.now += 24 * 3600
        with pytest.raises(ServiceUnavailable):
            await verifier.check(raw, signed(key, raw, timestamp=clock.now))

    def test_only_okp_ed25519_keys_are_read_and_a_set_without_one_is_unusable(self, key: Ed25519PrivateKey) -> None:
        document = {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}, {"kty": "OKP", "crv": "X25519", "x": "AA"}]}
        with pytest.raises(Exception, match="no Ed25519 key"):
            parse_jwks(document)
        document["keys"].append(jwk(key))
        assert len(parse_jwks(document)) == 1
        many = {"keys": [jwk(Ed25519PrivateKey.generate()) for _ in range(40)]}
        assert len(parse_jwks(many)) == 16


class TestWiring:
    def test_the_fal_kind_verifies_with_the_profiles_jwks_and_needs_no_secrets(self) -> None:
        kind = webhook_kind("fal")
        assert kind.uses_secrets is False
        assert kind.video_events == FAL_VIDEO_EVENTS
        settings = UpstreamSettings(kind="fal", webhook_jwks_url=JWKS_URL)
        clock: Callable[[], float] = Clock()
        verifier = build_fal_verifier(settings, [], clock)
        assert isinstance(verifier, FalVerifier)
        assert verifier._jwks_url == JWKS_URL
