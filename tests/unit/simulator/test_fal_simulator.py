"""The fal simulator in process (ASGITransport): fal's queue routes, per-family input schemas, the lifecycle,
the CDN files and their expiry, Ed25519-signed webhooks and their JWKS, and the `/_sim` knobs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from app.core.config import SimulatorSettings
from app.core.errors import ServiceUnavailable
from app.simulator import simulator_app
from app.simulator.fal import create_fal_simulator_app, fal_simulator_running
from app.webhooks.fal import FalVerifier, parse_fal_event

API_KEY = "fal-test-key"
KEY = {"authorization": f"Key {API_KEY}"}
BASE_URL = "http://fal.test"
VEO = "fal-ai/veo3.1"
HOOK = "http://receiver.test/hooks/fal"


@dataclass
class Receiver:
    """An ASGI app recording webhook deliveries; answers each with the next scripted status (200 after)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int, timeout: float = 10) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"expected {count} deliveries, got {len(self.received)}"
            await asyncio.sleep(0.02)
        return self.received


@dataclass
class Fal:
    client: httpx.AsyncClient
    transport: httpx.ASGITransport
    receiver: Receiver


@contextlib.asynccontextmanager
async def fal_sim(**overrides: Any) -> AsyncIterator[Fal]:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "queue_seconds": 0,
        "render_seconds": 0.2,
        "fps": 2,
        "webhook_retry_base_seconds": 0.05,
        "webhook_max_attempts": 3,
        **overrides,
    }
    receiver = Receiver()
    app = create_fal_simulator_app(SimulatorSettings(**values), webhook_transport=httpx.ASGITransport(app=receiver))
    transport = httpx.ASGITransport(app=app)
    async with (
        fal_simulator_running(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
    ):
        yield Fal(client, transport, receiver)


async def submit(fal: Fal, endpoint: str = VEO, body: dict[str, Any] | None = None, **params: str) -> dict[str, Any]:
    payload = body if body is not None else {"prompt": "a fox in the snow", "duration": "4s"}
    response = await fal.client.post(f"/{endpoint}", json=payload, headers=KEY, params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def wait_completed(fal: Fal, app: str, request_id: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await fal.client.get(f"/{app}/requests/{request_id}/status", headers=KEY)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        if status["status"] == "COMPLETED":
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


def png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def mp4_size(data: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


class TestAuthAndRouting:
    @pytest.mark.parametrize("headers", [{}, {"authorization": "Key wrong"}, {"authorization": f"Bearer {API_KEY}"}])
    async def test_the_queue_wants_fals_key_header(self, headers: dict[str, str]) -> None:
        async with fal_sim() as fal:
            response = await fal.client.post(f"/{VEO}", json={"prompt": "p"}, headers=headers)
            assert response.status_code == 401
            assert set(response.json()) == {"detail"}
            stats = (await fal.client.get("/_sim/stats", headers=KEY)).json()
            assert stats["create_requests"] == 0

    async def test_the_simulator_is_the_fal_kind(self) -> None:
        assert simulator_app("fal", SimulatorSettings()).title == "Video Gateway fal.ai simulator"

    async def test_an_unknown_endpoint_is_404(self) -> None:
        async with fal_sim() as fal:
            response = await fal.client.post("/fal-ai/sora-9", json={"prompt": "p"}, headers=KEY)
            assert response.status_code == 404
            assert "not found" in response.json()["detail"]


class TestInputSchemas:
    @pytest.mark.parametrize(
        ("endpoint", "body", "loc", "error_type"),
        [
            (VEO, {"prompt": "p", "duration": "8"}, ["body", "duration"], "enum"),
            (VEO, {"prompt": "p", "duration": 8}, ["body", "duration"], "enum"),
            (
                "fal-ai/kling-video/v2.5-turbo/pro/text-to-video",
                {"prompt": "p", "duration": "5s"},
                ["body", "duration"],
                "enum",
            ),
            ("fal-ai/luma-dream-machine/ray-2", {"prompt": "p", "duration": "5"}, ["body", "duration"], "enum"),
            (
                "fal-ai/wan/v2.2-a14b/text-to-video",
                {"prompt": "p", "duration": "5"},
                ["body", "duration"],
                "extra_forbidden",
            ),
            (
                "fal-ai/wan/v2.2-a14b/text-to-video",
                {"prompt": "p", "num_frames": 500},
                ["body", "num_frames"],
                "range_error",
            ),
            (
                "fal-ai/minimax/hailuo-02/pro/text-to-video",
                {"prompt": "p", "duration": "6"},
                ["body", "duration"],
                "extra_forbidden",
            ),
            (
                "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
                {"prompt": "p", "duration": "5"},
                ["body", "image_url"],
                "missing",
            ),
            (
                "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
                {"prompt": "p", "image_url": png(64, 36), "aspect_ratio": "16:9"},
                ["body", "aspect_ratio"],
                "extra_forbidden",
            ),
            (VEO, {"duration": "4s"}, ["body", "prompt"], "missing"),
            (
                VEO,
                {"prompt": "p", "image_url": "data:text/plain;base64,aGk="},
                ["body", "image_url"],
                "extra_forbidden",
            ),
            (
                "fal-ai/veo3.1/image-to-video",
                {"prompt": "p", "image_url": "data:image/png;base64,bm9wZQ=="},
                ["body", "image_url"],
                "image_load_error",
            ),
        ],
    )
    async def test_input_the_family_does_not_take_is_a_422_detail_list(
        self, endpoint: str, body: dict[str, Any], loc: list[str], error_type: str
    ) -> None:
        async with fal_sim() as fal:
            response = await fal.client.post(f"/{endpoint}", json=body, headers=KEY)
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            assert any(error["loc"] == loc and error["type"] == error_type for error in detail), detail
            assert response.headers["x-fal-retryable"] == "false"
            stats = (await fal.client.get("/_sim/stats", headers=KEY)).json()
            assert (stats["create_requests"], stats["requests_created"]) == (1, 0)

    @pytest.mark.parametrize(
        ("endpoint", "body", "size"),
        [
            (VEO, {"prompt": "p", "duration": "4s", "aspect_ratio": "9:16"}, (720, 1280)),
            ("fal-ai/minimax/hailuo-02/standard/text-to-video", {"prompt": "p", "duration": "6"}, (1366, 768)),
            (
                "fal-ai/wan/v2.2-a14b/text-to-video",
                {"prompt": "p", "num_frames": 17, "frames_per_second": 16, "resolution": "480p"},
                (832, 480),
            ),
            (
                "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
                {"prompt": "p", "image_url": png(90, 160)},
                (1080, 1920),
            ),
        ],
    )
    async def test_the_video_has_the_size_the_inputs_describe(
        self, endpoint: str, body: dict[str, Any], size: tuple[int, int]
    ) -> None:
        async with fal_sim() as fal:
            submitted = await submit(fal, endpoint, body)
            app = "/".join(endpoint.split("/")[:2])
            await wait_completed(fal, app, submitted["request_id"])
            result = (await fal.client.get(f"/{app}/requests/{submitted['request_id']}", headers=KEY)).json()
            video = await fal.client.get(result["video"]["url"])
            assert video.status_code == 200
            assert mp4_size(video.content) == size


class TestLifecycle:
    async def test_queue_then_progress_then_a_video_on_the_cdn_without_a_key(self) -> None:
        async with fal_sim(queue_seconds=0.3, render_seconds=0.3) as fal:
            first = await submit(fal)
            second = await submit(fal)
            assert set(first) >= {"request_id", "gateway_request_id", "response_url", "status_url", "cancel_url"}
            # The status URL uses the app path (first two segments), not the full endpoint.
            assert first["status_url"] == f"{BASE_URL}/fal-ai/veo3.1/requests/{first['request_id']}/status"
            status = (
                await fal.client.get(f"/fal-ai/veo3.1/requests/{second['request_id']}/status", headers=KEY)
            ).json()
            assert (status["status"], status["queue_position"]) == ("IN_QUEUE", 1)
            seen: set[str] = set()
            while "COMPLETED" not in seen:
                response = await fal.client.get(
                    f"/fal-ai/veo3.1/requests/{first['request_id']}/status", params={"logs": "1"}, headers=KEY
                )
                seen.add(response.json()["status"])
                if response.json()["status"] == "IN_PROGRESS":
                    assert response.json()["logs"]
                await asyncio.sleep(0.03)
            assert seen == {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
            completed = response.json()
            assert "error" not in completed and completed["metrics"]["inference_time"] >= 0
            result = (await fal.client.get(f"/fal-ai/veo3.1/requests/{first['request_id']}", headers=KEY)).json()
            video = result["video"]
            assert video["content_type"] == "video/mp4" and video["url"].startswith(f"{BASE_URL}/files/")
            download = await fal.client.get(video["url"])  # public: no key
            assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
            assert len(download.content) == video["file_size"]
            assert mp4_size(download.content) == (1280, 720)

    async def test_a_result_before_completion_is_400_and_a_wrong_app_is_404(self) -> None:
        async with fal_sim(queue_seconds=5) as fal:
            submitted = await submit(fal)
            early = await fal.client.get(f"/fal-ai/veo3.1/requests/{submitted['request_id']}", headers=KEY)
            assert early.status_code == 400
            wrong = await fal.client.get(f"/fal-ai/kling-video/requests/{submitted['request_id']}/status", headers=KEY)
            assert wrong.status_code == 404

    async def test_files_are_gone_after_the_ttl_and_on_expire(self) -> None:
        async with fal_sim(ttl_seconds=0.4) as fal:
            submitted = await submit(fal)
            await wait_completed(fal, "fal-ai/veo3.1", submitted["request_id"])
            url = (await fal.client.get(f"/fal-ai/veo3.1/requests/{submitted['request_id']}", headers=KEY)).json()[
                "video"
            ]["url"]
            assert (await fal.client.get(url)).status_code == 200
            await asyncio.sleep(0.5)
            assert (await fal.client.get(url)).status_code == 404
        async with fal_sim() as fal:
            submitted = await submit(fal)
            await wait_completed(fal, "fal-ai/veo3.1", submitted["request_id"])
            url = (await fal.client.get(f"/fal-ai/veo3.1/requests/{submitted['request_id']}", headers=KEY)).json()[
                "video"
            ]["url"]
            expired = await fal.client.post(f"/_sim/requests/{submitted['request_id']}/expire", headers=KEY)
            assert expired.status_code == 200
            assert (await fal.client.get(url)).status_code == 404

    async def test_a_queued_request_can_be_cancelled_a_running_one_cannot(self) -> None:
        async with fal_sim(queue_seconds=5) as fal:
            submitted = await submit(fal)
            cancel_url = f"/fal-ai/veo3.1/requests/{submitted['request_id']}/cancel"
            response = await fal.client.put(cancel_url, headers=KEY)
            assert (response.status_code, response.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
            status = (await fal.client.get(f"{cancel_url.removesuffix('/cancel')}/status", headers=KEY)).json()
            assert status["status"] == "COMPLETED" and status["error"]
            assert (await fal.client.put(cancel_url, headers=KEY)).status_code == 400
        async with fal_sim(render_seconds=5) as fal:
            submitted = await submit(fal)
            response = await fal.client.put(f"/fal-ai/veo3.1/requests/{submitted['request_id']}/cancel", headers=KEY)
            assert response.status_code == 400


class TestEndings:
    async def test_a_blocked_word_completes_with_a_content_policy_error(self) -> None:
        async with fal_sim() as fal:
            submitted = await submit(fal, body={"prompt": "something forbidden", "duration": "4s"})
            status = await wait_completed(fal, "fal-ai/veo3.1", submitted["request_id"])
            assert status["error_type"] == "content_policy_violation"
            result = await fal.client.get(f"/fal-ai/veo3.1/requests/{submitted['request_id']}", headers=KEY)
            assert result.status_code == 422
            [error] = result.json()["detail"]
            assert (error["type"], error["loc"]) == ("content_policy_violation", ["body", "prompt"])

    async def test_the_error_marker_fails_the_render_with_fals_error_type(self) -> None:
        async with fal_sim() as fal:
            submitted = await submit(fal, body={"prompt": "please sim:error", "duration": "4s"})
            status = await wait_completed(fal, "fal-ai/veo3.1", submitted["request_id"])
            assert status["error_type"] == "runner_server_error" and status["error"]
            result = await fal.client.get(f"/fal-ai/veo3.1/requests/{submitted['request_id']}", headers=KEY)
            assert result.status_code == 500
            assert result.headers["x-fal-error-type"] == "runner_server_error"

    async def test_a_forced_ending_wins_over_the_prompt(self) -> None:
        async with fal_sim() as fal:
            await fal.client.patch("/_sim/faults", json={"ending_moderation_next": 1}, headers=KEY)
            submitted = await submit(fal)
            status = await wait_completed(fal, "fal-ai/veo3.1", submitted["request_id"])
            assert status["error_type"] == "content_policy_violation"


class TestFaults:
    async def test_rate_limit_and_server_error_bursts_hit_the_named_routes(self) -> None:
        async with fal_sim() as fal:
            await fal.client.put(
                "/_sim/faults",
                json={"rate_limit_next": 1, "server_error_next": 1, "server_error_status": 503},
                headers=KEY,
            )
            limited = await fal.client.post(f"/{VEO}", json={"prompt": "p"}, headers=KEY)
            assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
            failed = await fal.client.post(f"/{VEO}", json={"prompt": "p"}, headers=KEY)
            assert failed.status_code == 503 and failed.headers["x-fal-error-type"]
            await submit(fal)
            stats = (await fal.client.get("/_sim/stats", headers=KEY)).json()
            assert (stats["create_requests"], stats["requests_created"]) == (3, 1)

    async def test_the_jwks_serves_ed25519_keys_fails_on_demand_and_rotates(self) -> None:
        async with fal_sim() as fal:
            jwks = (await fal.client.get("/.well-known/jwks.json")).json()
            [key] = jwks["keys"]
            assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
            await fal.client.patch("/_sim/faults", json={"jwks_unavailable": True}, headers=KEY)
            assert (await fal.client.get("/.well-known/jwks.json")).status_code == 503
            await fal.client.patch("/_sim/faults", json={"jwks_unavailable": False}, headers=KEY)
            rotated = (await fal.client.post("/_sim/rotate-key", headers=KEY)).json()
            assert [entry["x"] for entry in rotated["keys"]][1] == key["x"]
            assert (await fal.client.get("/_sim/jwks-fetches", headers=KEY)).json()["fetches"] == 2


class TestWebhooks:
    async def test_a_signed_delivery_goes_to_the_requests_fal_webhook_and_verifies(self) -> None:
        async with fal_sim() as fal:
            submitted = await submit(fal, fal_webhook=HOOK)
            [(headers, raw)] = await fal.receiver.wait_for(1)
            body = json.loads(raw)
            assert (body["request_id"], body["status"]) == (submitted["request_id"], "OK")
            assert body["payload"]["video"]["url"].startswith(f"{BASE_URL}/files/")
            assert headers["x-fal-webhook-request-id"] == submitted["request_id"]
            verifier = FalVerifier(f"{BASE_URL}/.well-known/jwks.json", transport=fal.transport)
            event = parse_fal_event(await verifier.check(raw, headers))
            assert (event.type, event.object_id) == ("OK", submitted["request_id"])
            # A request submitted without fal_webhook gets no delivery.
            quiet = await submit(fal)
            await wait_completed(fal, "fal-ai/veo3.1", quiet["request_id"])
            await asyncio.sleep(0.1)
            assert len(fal.receiver.received) == 1

    async def test_a_refused_render_sends_an_error_delivery_with_fals_detail(self) -> None:
        async with fal_sim() as fal:
            await submit(fal, body={"prompt": "forbidden", "duration": "4s"}, fal_webhook=HOOK)
            [(_headers, raw)] = await fal.receiver.wait_for(1)
            body = json.loads(raw)
            assert (body["status"], body["error"]) == ("ERROR", "Invalid status code: 422")
            assert body["payload"]["detail"][0]["type"] == "content_policy_violation"

    async def test_failed_attempts_are_retried_and_re_signed(self) -> None:
        async with fal_sim() as fal:
            fal.receiver.statuses = [500]
            await submit(fal, fal_webhook=HOOK)
            first, second = await fal.receiver.wait_for(2)
            assert first[1] == second[1]
            deliveries = (await fal.client.get("/_sim/webhooks", headers=KEY)).json()["data"]
            [delivery] = deliveries
            assert [attempt["status_code"] for attempt in delivery["attempts"]] == [500, 200]
            assert (delivery["status"], delivery["url"], delivery["event"]) == ("delivered", HOOK, "OK")

    async def test_drop_and_duplicate_knobs(self) -> None:
        async with fal_sim() as fal:
            await fal.client.patch("/_sim/faults", json={"webhook_drop_next": 1}, headers=KEY)
            dropped = await submit(fal, fal_webhook=HOOK)
            await wait_completed(fal, "fal-ai/veo3.1", dropped["request_id"])
            await fal.client.patch("/_sim/faults", json={"webhook_duplicate": True}, headers=KEY)
            await submit(fal, fal_webhook=HOOK)
            received = await fal.receiver.wait_for(2)
            assert received[0][1] == received[1][1]
            deliveries = (await fal.client.get("/_sim/webhooks", headers=KEY)).json()["data"]
            assert deliveries[0]["status"] == "dropped"

    async def test_a_stale_timestamp_knob_makes_deliveries_a_receiver_refuses(self) -> None:
        async with fal_sim() as fal:
            await fal.client.patch("/_sim/faults", json={"webhook_timestamp_offset_seconds": -600}, headers=KEY)
            await submit(fal, fal_webhook=HOOK)
            [(headers, raw)] = await fal.receiver.wait_for(1)
            assert int(headers["x-fal-webhook-timestamp"]) < time.time() - 590
            verifier = FalVerifier(f"{BASE_URL}/.well-known/jwks.json", transport=fal.transport)
            with pytest.raises(Exception, match="too old"):
                await verifier.check(raw, headers)

    async def test_a_rotated_key_signs_from_then_on_and_a_jwks_outage_is_a_503_to_a_cold_receiver(self) -> None:
        async with fal_sim() as fal:
            await fal.client.post("/_sim/rotate-key", headers=KEY)
            await submit(fal, fal_webhook=HOOK)
            [(headers, raw)] = await fal.receiver.wait_for(1)
            await fal.client.patch("/_sim/faults", json={"jwks_unavailable": True}, headers=KEY)
            cold = FalVerifier(f"{BASE_URL}/.well-known/jwks.json", transport=fal.transport)
            with pytest.raises(ServiceUnavailable):
                await cold.check(raw, headers)
            await fal.client.patch("/_sim/faults", json={"jwks_unavailable": False}, headers=KEY)
            warm = FalVerifier(f"{BASE_URL}/.well-known/jwks.json", transport=fal.transport)
            assert (await warm.check(raw, headers)).webhook_id == f"{json.loads(raw)['request_id']}:OK"
