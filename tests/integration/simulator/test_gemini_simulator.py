"""The Gemini (Veo) simulator end to end over ASGITransport: operations, endings, files, webhooks, faults."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import httpx
import pytest
from PIL import Image
from standardwebhooks import Webhook

from app.core.config import SimulatorSettings
from app.simulator import create_gemini_simulator_app, gemini_simulator_running
from tests.support.videos import image_of

API_KEY = "gemini-test-key"
KEY = {"x-goog-api-key": API_KEY}
BASE_URL = "http://gemini.test"
MODEL = "veo-3.1-fast-generate-preview"
CREATE_PATH = f"/v1beta/models/{MODEL}:predictLongRunning"
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
FPS = 4


def gemini_settings(**overrides: Any) -> SimulatorSettings:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "queue_seconds": 0,
        "render_seconds": 0.2,
        "fps": FPS,
        "webhook_retry_base_seconds": 0.05,
        "webhook_max_attempts": 3,
    }
    values.update(overrides)
    return SimulatorSettings(**values)


@contextlib.asynccontextmanager
async def gemini_sim(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator in-process; the client sends no key by itself (tests choose what to send)."""
    app = create_gemini_simulator_app(gemini_settings(**overrides))
    async with (
        gemini_simulator_running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        yield client


def body(prompt: str | None = "A calico cat playing a piano on stage", **parameters: Any) -> dict[str, Any]:
    instance: dict[str, Any] = {} if prompt is None else {"prompt": prompt}
    return {"instances": [instance], "parameters": {"durationSeconds": 4, "aspectRatio": "16:9", **parameters}}


async def create(client: httpx.AsyncClient, payload: dict[str, Any] | None = None) -> str:
    response = await client.post(CREATE_PATH, json=payload or body(), headers=KEY)
    assert response.status_code == 200, response.text
    name: str = response.json()["name"]
    return name


async def wait_done(client: httpx.AsyncClient, name: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/v1beta/{name}", headers=KEY)
        assert response.status_code == 200, response.text
        operation: dict[str, Any] = response.json()
        if operation.get("done"):
            return operation
        assert operation == {"name": name}, "a running operation is its name only"
        if time.monotonic() > deadline:
            raise AssertionError(f"operation {name} never finished")
        await asyncio.sleep(0.05)


def sample_uri(operation: dict[str, Any]) -> str:
    [sample] = operation["response"]["generateVideoResponse"]["generatedSamples"]
    uri: str = sample["video"]["uri"]
    return uri


def assert_google_error(response: httpx.Response, code: int, status: str) -> str:
    assert response.status_code == code, response.text
    payload = response.json()
    assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "status"}
    assert (payload["error"]["code"], payload["error"]["status"]) == (code, status)
    message: str = payload["error"]["message"]
    assert message
    return message


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def image_part(data: bytes, mime_type: str = "image/png") -> dict[str, str]:
    return {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": mime_type}


async def download(client: httpx.AsyncClient, uri: str) -> httpx.Response:
    """Follow the key-protected URI's redirect by hand, sending no key to the target."""
    redirect = await client.get(uri, headers=KEY)
    assert redirect.status_code == 302, redirect.text
    return await client.get(redirect.headers["location"])


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get("/_sim/stats", headers=KEY)).json()
    return result


class TestLifecycle:
    async def test_create_poll_download_real_mp4(self) -> None:
        async with gemini_sim(queue_seconds=0.2, render_seconds=0.5) as client:
            name = await create(client)
            assert re.fullmatch(rf"models/{re.escape(MODEL)}/operations/[a-z0-9]{{12}}", name)
            # Queued and running look the same from outside: the name, no done, no response.
            assert (await client.get(f"/v1beta/{name}", headers=KEY)).json() == {"name": name}

            operation = await wait_done(client, name)
            assert set(operation) == {"name", "done", "response"} and operation["name"] == name
            assert operation["response"]["@type"] == RESPONSE_TYPE
            uri = sample_uri(operation)
            match = re.fullmatch(rf"{BASE_URL}/v1beta/files/([a-z0-9]{{12}}):download\?alt=media", uri)
            assert match, uri
            file_id = match.group(1)

            redirect = await client.get(uri, headers=KEY)
            assert redirect.status_code == 302
            location = redirect.headers["location"]
            assert location.startswith(f"{BASE_URL}/download/{file_id}?token=")
            assert not location.startswith(f"{BASE_URL}/v1beta/")

            mp4 = await client.get(location)  # no key: the token authorises the target
            assert mp4.status_code == 200
            assert mp4.headers["content-type"] == "video/mp4"
            assert int(mp4.headers["content-length"]) == len(mp4.content)
            with av.open(io.BytesIO(mp4.content), mode="r") as container:
                stream = container.streams.video[0]
                assert stream.codec_context.name == "h264"
                assert (stream.width, stream.height) == (1280, 720)
                assert sum(1 for _ in container.decode(stream)) == 4 * FPS
                assert container.duration is not None
                assert container.duration / 1_000_000 == pytest.approx(4.0, abs=0.3)

            counts = await stats(client)
            assert (counts["create_requests"], counts["operations_created"], counts["renders_completed"]) == (1, 1, 1)
            assert counts["requests"]["predict_long_running"] == 1
            assert counts["requests"]["download_file"] == 1

    async def test_download_uri_needs_the_key_but_the_target_needs_the_token(self) -> None:
        async with gemini_sim() as client:
            uri = sample_uri(await wait_done(client, await create(client)))
            assert_google_error(await client.get(uri), 401, "UNAUTHENTICATED")
            assert_google_error(await client.get(uri, headers={"x-goog-api-key": "wrong"}), 403, "PERMISSION_DENIED")
            # The key in the query string is as good as the header.
            keyed = await client.get(f"{uri}&key={API_KEY}")
            assert keyed.status_code == 302
            location = keyed.headers["location"]
            assert (await client.get(location)).status_code == 200
            forged = re.sub(r"token=[^&]+", "token=forged", location)
            assert_google_error(await client.get(forged), 403, "PERMISSION_DENIED")

    async def test_portrait_1080p_with_reference_image_as_first_frame(self) -> None:
        reference = png((300, 500), (20, 180, 60))
        payload = body(durationSeconds=8, aspectRatio="9:16", resolution="1080p")
        payload["instances"][0]["image"] = image_part(reference)
        async with gemini_sim() as client:
            uri = sample_uri(await wait_done(client, await create(client, payload)))
            mp4 = await download(client, uri)
            with av.open(io.BytesIO(mp4.content), mode="r") as container:
                stream = container.streams.video[0]
                assert (stream.width, stream.height) == (1080, 1920)
                first = image_of(next(container.decode(stream)))
                assert container.duration is not None
                assert container.duration / 1_000_000 == pytest.approx(8.0, abs=0.3)
            # A corner the prompt text and the ball leave alone shows the reference image.
            pixel = first.getpixel((1060, 1800))
            assert isinstance(pixel, tuple)
            red, green, blue = pixel
            assert abs(red - 20) < 25 and abs(green - 180) < 25 and abs(blue - 60) < 25

    async def test_sample_uri_uses_the_configured_public_base(self) -> None:
        async with gemini_sim() as client:
            await client.patch("/_sim/config", json={"public_base_url": "https://veo.example"}, headers=KEY)
            uri = sample_uri(await wait_done(client, await create(client)))
            assert uri.startswith("https://veo.example/v1beta/files/")


class TestEndings:
    async def test_error_marker_ends_with_an_rpc_error(self) -> None:
        async with gemini_sim() as client:
            operation = await wait_done(client, await create(client, body("a dog surfing, Sim:Error please")))
            assert set(operation) == {"name", "done", "error"}
            assert operation["error"]["code"] == 13 and operation["error"]["status"] == "INTERNAL"
            assert operation["error"]["message"]
            assert (await stats(client))["renders_completed"] == 0

    async def test_blocked_word_ends_rai_filtered_without_samples(self) -> None:
        async with gemini_sim() as client:
            operation = await wait_done(client, await create(client, body("something FORBIDDEN here")))
            assert set(operation) == {"name", "done", "response"}
            assert operation["response"]["@type"] == RESPONSE_TYPE
            generated = operation["response"]["generateVideoResponse"]
            assert set(generated) == {"raiMediaFilteredCount", "raiMediaFilteredReasons"}
            assert generated["raiMediaFilteredCount"] == 1
            [reason] = generated["raiMediaFilteredReasons"]
            assert reason.endswith("You have not been charged for this attempt.")

    async def test_knobs_force_each_ending_for_the_next_creates(self) -> None:
        async with gemini_sim() as client:
            await client.patch("/_sim/faults", json={"ending_error_next": 1, "ending_moderation_next": 1}, headers=KEY)
            errored = await wait_done(client, await create(client))
            filtered = await wait_done(client, await create(client))
            healthy = await wait_done(client, await create(client))
            assert "error" in errored
            assert "generatedSamples" not in filtered["response"]["generateVideoResponse"]
            assert sample_uri(healthy)
            await client.patch("/_sim/faults", json={"ending_sample_next": 1}, headers=KEY)
            forced = await wait_done(client, await create(client, body("sim:error")))
            assert sample_uri(forced)
            knobs = (await client.get("/_sim/faults", headers=KEY)).json()
            assert (knobs["ending_error_next"], knobs["ending_moderation_next"], knobs["ending_sample_next"]) == (
                0,
                0,
                0,
            )


class TestValidation:
    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param(body(durationSeconds=12), id="duration-12"),
            pytest.param(body(durationSeconds="8"), id="duration-as-string"),
            pytest.param(body(durationSeconds=5), id="duration-5"),
            pytest.param(body(durationSeconds=4, resolution="1080p"), id="1080p-with-4s"),
            pytest.param(body(aspectRatio="1:1"), id="bad-aspect"),
            pytest.param(body(resolution="480p"), id="bad-resolution"),
            pytest.param(body(sampleCount=2), id="two-samples"),
            pytest.param(body(seed=7), id="unknown-parameter"),
            pytest.param(body(None), id="missing-prompt"),
            pytest.param(body(""), id="empty-prompt"),
            pytest.param({"instances": [], "parameters": {}}, id="no-instance"),
            pytest.param({**body(), "extra": 1}, id="unknown-top-level-field"),
        ],
    )
    async def test_refused_with_invalid_argument(self, payload: dict[str, Any]) -> None:
        async with gemini_sim(queue_seconds=60) as client:
            response = await client.post(CREATE_PATH, json=payload, headers=KEY)
            assert_google_error(response, 400, "INVALID_ARGUMENT")
            assert (await stats(client))["operations_created"] == 0

    @pytest.mark.parametrize(
        "image",
        [
            pytest.param({"bytesBase64Encoded": "not base64!!", "mimeType": "image/png"}, id="bad-base64"),
            pytest.param(image_part(b"plain text, not pixels"), id="not-an-image"),
            pytest.param(image_part(png((64, 64), (1, 2, 3)), "image/gif"), id="bad-mime-type"),
        ],
    )
    async def test_bad_image_is_refused(self, image: dict[str, str]) -> None:
        payload = body()
        payload["instances"][0]["image"] = image
        async with gemini_sim(queue_seconds=60) as client:
            assert_google_error(await client.post(CREATE_PATH, json=payload, headers=KEY), 400, "INVALID_ARGUMENT")

    async def test_valid_variants_are_accepted(self) -> None:
        async with gemini_sim(queue_seconds=60) as client:
            for payload in (
                body(durationSeconds=8, resolution="1080p"),
                body(durationSeconds=6, aspectRatio="9:16"),
                body(durationSeconds=8.0),
                {"instances": [{"prompt": "defaults only"}]},
            ):
                assert (await client.post(CREATE_PATH, json=payload, headers=KEY)).status_code == 200, payload

    async def test_unparseable_json_is_invalid_argument(self) -> None:
        async with gemini_sim() as client:
            response = await client.post(CREATE_PATH, content=b"{nope", headers=KEY)
            assert_google_error(response, 400, "INVALID_ARGUMENT")

    @pytest.mark.parametrize(
        "path",
        [
            "/v1beta/models/veo-9.9-imaginary:predictLongRunning",
            f"/v1beta/models/{MODEL}:generateContent",
            f"/v1beta/models/{MODEL}",
        ],
    )
    async def test_unknown_model_or_method_is_not_found(self, path: str) -> None:
        async with gemini_sim() as client:
            assert_google_error(await client.post(path, json=body(), headers=KEY), 404, "NOT_FOUND")


class TestAuthAndRouting:
    async def test_every_google_route_needs_the_key(self) -> None:
        async with gemini_sim() as client:
            assert_google_error(await client.post(CREATE_PATH, json=body()), 401, "UNAUTHENTICATED")
            wrong = {"x-goog-api-key": "nope"}
            assert_google_error(await client.post(CREATE_PATH, json=body(), headers=wrong), 403, "PERMISSION_DENIED")
            name = (await client.post(CREATE_PATH, json=body(), params={"key": API_KEY})).json()["name"]
            assert_google_error(await client.get(f"/v1beta/{name}"), 401, "UNAUTHENTICATED")
            assert (await client.get(f"/v1beta/{name}", params={"key": API_KEY})).status_code == 200
            assert_google_error(await client.get("/_sim/stats"), 401, "UNAUTHENTICATED")
            bearer = await client.get("/_sim/stats", headers={"Authorization": f"Bearer {API_KEY}"})
            assert bearer.status_code == 200

    async def test_there_is_no_delete_and_unknown_operations_are_not_found(self) -> None:
        async with gemini_sim() as client:
            name = await create(client)
            assert_google_error(await client.delete(f"/v1beta/{name}", headers=KEY), 404, "NOT_FOUND")
            assert (await client.get(f"/v1beta/{name}", headers=KEY)).status_code == 200
            missing = f"models/{MODEL}/operations/doesnotexist"
            assert_google_error(await client.get(f"/v1beta/{missing}", headers=KEY), 404, "NOT_FOUND")
            # The operation's id under another model's name is not the same operation.
            other = name.replace(MODEL, "veo-2.0-generate-001")
            assert_google_error(await client.get(f"/v1beta/{other}", headers=KEY), 404, "NOT_FOUND")
            assert_google_error(await client.get("/v1beta/files/abc:download?alt=media", headers=KEY), 404, "NOT_FOUND")


class TestFileLifetime:
    async def test_file_is_gone_after_ttl(self) -> None:
        async with gemini_sim(ttl_seconds=0.6) as client:
            uri = sample_uri(await wait_done(client, await create(client)))
            redirect = await client.get(uri, headers=KEY)
            assert redirect.status_code == 302
            await asyncio.sleep(0.8)
            assert_google_error(await client.get(uri, headers=KEY), 404, "NOT_FOUND")
            assert_google_error(await client.get(redirect.headers["location"]), 404, "NOT_FOUND")

    async def test_admin_expire_removes_the_file_now(self) -> None:
        async with gemini_sim(ttl_seconds=172800) as client:
            name = await create(client)
            uri = sample_uri(await wait_done(client, name))
            location = (await client.get(uri, headers=KEY)).headers["location"]
            expired = await client.post(f"/_sim/operations/{name.rsplit('/', 1)[1]}/expire", headers=KEY)
            assert expired.status_code == 200 and expired.json()["name"] == name
            assert_google_error(await client.get(uri, headers=KEY), 404, "NOT_FOUND")
            assert_google_error(await client.get(location), 404, "NOT_FOUND")
            # The operation itself is still there and still done.
            assert (await client.get(f"/v1beta/{name}", headers=KEY)).json()["done"] is True


async def settled_deliveries(client: httpx.AsyncClient, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        data: list[dict[str, Any]] = (await client.get("/_sim/webhooks", headers=KEY)).json()["data"]
        if sum(d["status"] not in ("pending", "held") for d in data) >= count:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries did not settle: {data}")
        await asyncio.sleep(0.02)


class TestWebhooks:
    async def test_video_generated_is_signed_and_sent_only_for_samples(
        self, receiver: Any, webhook_secret: str
    ) -> None:
        async with gemini_sim(webhook_url=receiver.url, webhook_secret=webhook_secret) as client:
            await wait_done(client, await create(client, body("sim:error")))
            await wait_done(client, await create(client, body("a forbidden thing")))
            uri = sample_uri(await wait_done(client, await create(client)))
            [hook] = await receiver.wait_for(1)
            event = Webhook(webhook_secret).verify(hook.body, hook.headers)
            assert event == {"type": "video.generated", "data": {"video_uri": uri}}
            assert hook.headers["webhook-signature"].startswith("v1,")
            assert hook.headers["content-type"] == "application/json"
            await asyncio.sleep(0.3)
            assert len(receiver.received) == 1  # nothing for the error or the RAI filter
            [log] = await settled_deliveries(client, 1)
            assert (log["status"], log["video_uri"], log["type"]) == ("delivered", uri, "video.generated")

    async def test_non_2xx_is_retried_with_the_same_id(self, receiver: Any, webhook_secret: str) -> None:
        receiver.statuses = [500, 503]
        async with gemini_sim(webhook_url=receiver.url, webhook_secret=webhook_secret) as client:
            await create(client)
            hooks = await receiver.wait_for(3)
            assert len({hook.headers["webhook-id"] for hook in hooks}) == 1
            for hook in hooks:
                Webhook(webhook_secret).verify(hook.body, hook.headers)
            [log] = await settled_deliveries(client, 1)
            assert [attempt["status_code"] for attempt in log["attempts"]] == [500, 503, 200]

    async def test_drop_next_loses_one_event(self, receiver: Any, webhook_secret: str) -> None:
        async with gemini_sim(webhook_url=receiver.url, webhook_secret=webhook_secret) as client:
            await client.patch("/_sim/faults", json={"webhook_drop_next": 1}, headers=KEY)
            await wait_done(client, await create(client))
            kept = sample_uri(await wait_done(client, await create(client)))
            [hook] = await receiver.wait_for(1)
            assert json.loads(hook.body)["data"]["video_uri"] == kept
            assert [d["status"] for d in await settled_deliveries(client, 2)] == ["dropped", "delivered"]


class TestBursts:
    async def test_rate_limit_next_answers_429_in_googles_envelope(self) -> None:
        async with gemini_sim(queue_seconds=60) as client:
            await client.patch("/_sim/faults", json={"rate_limit_next": 2}, headers=KEY)
            for _ in range(2):
                response = await client.post(CREATE_PATH, json=body(), headers=KEY)
                assert response.status_code == 429
                assert response.json() == {
                    "error": {
                        "code": 429,
                        "message": "Resource has been exhausted (e.g. check quota).",
                        "status": "RESOURCE_EXHAUSTED",
                    }
                }
            assert (await client.post(CREATE_PATH, json=body(), headers=KEY)).status_code == 200
            counts = await stats(client)
            assert (counts["create_requests"], counts["operations_created"]) == (3, 1)

    async def test_server_error_burst_hits_only_the_chosen_route(self) -> None:
        async with gemini_sim(queue_seconds=60) as client:
            knobs = {"server_error_next": 1, "server_error_status": 503, "burst_routes": ["get_operation"]}
            await client.patch("/_sim/faults", json=knobs, headers=KEY)
            name = await create(client)
            assert_google_error(await client.get(f"/v1beta/{name}", headers=KEY), 503, "UNAVAILABLE")
            assert (await client.get(f"/v1beta/{name}", headers=KEY)).json() == {"name": name}

    async def test_synthetic_asset_is_served_with_its_exact_size(self) -> None:
        async with gemini_sim() as client:
            await client.patch("/_sim/faults", json={"synthetic_asset_bytes": 300_000}, headers=KEY)
            mp4 = await download(client, sample_uri(await wait_done(client, await create(client))))
            assert len(mp4.content) == int(mp4.headers["content-length"]) == 300_000
            assert mp4.content[4:8] == b"ftyp"

    async def test_truncated_then_throttled_download(self) -> None:
        async with gemini_sim() as client:
            knobs = {
                "synthetic_asset_bytes": 40_000,
                "content_truncate_after_bytes": 1_000,
                "content_faults_remaining": 1,
            }
            await client.patch("/_sim/faults", json=knobs, headers=KEY)
            uri = sample_uri(await wait_done(client, await create(client)))
            truncated = await download(client, uri)
            assert (len(truncated.content), truncated.headers["content-length"]) == (1_000, "40000")
            await client.patch("/_sim/faults", json={"content_bytes_per_second": 100_000}, headers=KEY)
            started = time.monotonic()
            whole = await download(client, uri)  # the truncation countdown is spent
            assert len(whole.content) == 40_000
            assert time.monotonic() - started >= 0.35
