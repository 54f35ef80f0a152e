"""Veo 3.1's video extension in the Gemini simulator, in process over ASGITransport: `instances[0].video` naming
one of its own generated files makes one real MP4 (the source's frames, then 7 s of new ones) through the same
operation lifecycle, webhook and faults as a create; what Google refuses is a 400 INVALID_ARGUMENT. Last, the
gateway's Veo adapter extends a render against the simulator, so its wire form is checked by the fake too."""

from __future__ import annotations

import io
from typing import Any

import av
import httpx
import numpy as np
import pytest

from app.core.config import UpstreamSettings
from app.simulator.gemini.runtime import GeminiSimulator
from app.upstream.gemini import GeminiAdapter
from app.upstream.schemas import ExtendCommand, SourceVideo
from tests.integration.simulator.test_gemini_simulator import (
    API_KEY,
    BASE_URL,
    FPS,
    KEY,
    assert_google_error,
    body,
    create,
    download,
    gemini_sim,
    image_part,
    png,
    sample_uri,
    stats,
    wait_done,
)

MODEL = "veo-3.1-fast-generate-preview"
EXTEND_PATH = f"/v1beta/models/{MODEL}:predictLongRunning"


def extension(uri: str, prompt: str | None = "the cat takes a bow", **parameters: Any) -> dict[str, Any]:
    instance: dict[str, Any] = {"video": {"uri": uri}}
    if prompt is not None:
        instance["prompt"] = prompt
    return {"instances": [instance], "parameters": {"resolution": "720p", "durationSeconds": 8, **parameters}}


async def rendered(client: httpx.AsyncClient, seconds: int = 4, **parameters: Any) -> str:
    """A completed create's sample URI."""
    return sample_uri(await wait_done(client, await create(client, body(durationSeconds=seconds, **parameters))))


async def extend(client: httpx.AsyncClient, payload: dict[str, Any], model: str = MODEL) -> httpx.Response:
    return await client.post(f"/v1beta/models/{model}:predictLongRunning", json=payload, headers=KEY)


def frames_of(mp4: bytes) -> tuple[tuple[int, int], float, list[np.ndarray]]:
    """(width, height), duration in seconds, and every frame as an RGB array."""
    with av.open(io.BytesIO(mp4), mode="r") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        size = (stream.width, stream.height)
        frames = [frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(stream)]
        assert container.duration is not None
        return size, container.duration / 1_000_000, frames


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def simulator_of(client: httpx.AsyncClient) -> GeminiSimulator:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    simulator: GeminiSimulator = transport.app.state.simulator  # type: ignore[attr-defined]
    return simulator


class TestExtension:
    async def test_a_720p_render_extended_is_its_frames_then_7_new_seconds(self) -> None:
        async with gemini_sim() as client:
            source_uri = await rendered(client, seconds=4)
            source_mp4 = (await download(client, source_uri)).content
            response = await extend(client, extension(source_uri, aspectRatio="16:9", sampleCount=1))
            assert response.status_code == 200, response.text
            name = response.json()["name"]
            assert name.startswith(f"models/{MODEL}/operations/")
            operation = await wait_done(client, name)
            uri = sample_uri(operation)
            assert uri != source_uri

            size, duration, frames = frames_of((await download(client, uri)).content)
            _, source_duration, source_frames = frames_of(source_mp4)
            assert size == (1280, 720)
            assert len(source_frames) == 4 * FPS
            assert len(frames) == (4 + 7) * FPS
            assert duration == pytest.approx(source_duration + 7, abs=0.3)
            # The source comes first, frame for frame (re-encoded, so nearly equal)...
            for index in (0, 1, len(source_frames) - 1):
                assert difference(frames[index], source_frames[index]) < 6, index
            # ... then new frames: the source's moving ball does not go on as it did.
            assert difference(frames[len(source_frames) + FPS], source_frames[0]) > 1

            counts = await stats(client)
            assert (counts["create_requests"], counts["operations_created"], counts["renders_completed"]) == (2, 2, 2)

    async def test_portrait_as_googles_sdk_sends_it_and_extended_again(self) -> None:
        async with gemini_sim() as client:
            source_uri = await rendered(client, seconds=6, aspectRatio="9:16")
            # google-genai sends the downloaded bytes beside the uri (Video.video_bytes → encodedVideo), no
            # parameters but sampleCount, and the prompt may be left out.
            sdk_shaped = {
                "instances": [{"video": {"uri": source_uri, "encodedVideo": "AAAA", "encoding": "video/mp4"}}],
                "parameters": {"sampleCount": 1},
            }
            response = await extend(client, sdk_shaped)
            assert response.status_code == 200, response.text
            once = sample_uri(await wait_done(client, response.json()["name"]))
            response = await extend(client, extension(once, aspectRatio="9:16"))
            assert response.status_code == 200, response.text
            twice = sample_uri(await wait_done(client, response.json()["name"]))
            size, duration, frames = frames_of((await download(client, twice)).content)
            assert size == (720, 1280)
            assert len(frames) == (6 + 7 + 7) * FPS
            assert duration == pytest.approx(20, abs=0.3)

    async def test_an_extension_ends_like_a_create_and_fires_the_webhook(self) -> None:
        async with gemini_sim(blocked_words=["forbidden"]) as client:
            source_uri = await rendered(client)
            errored = await wait_done(
                client, (await extend(client, extension(source_uri, "sim:error now"))).json()["name"]
            )
            assert errored["error"]["status"] == "INTERNAL"
            filtered = await wait_done(
                client, (await extend(client, extension(source_uri, "forbidden"))).json()["name"]
            )
            assert filtered["response"]["generateVideoResponse"]["raiMediaFilteredCount"] == 1
            await client.patch("/_sim/faults", json={"ending_error_next": 1}, headers=KEY)
            forced = await wait_done(client, (await extend(client, extension(source_uri))).json()["name"])
            assert "error" in forced
            await client.patch("/_sim/config", json={"webhook_url": "http://receiver.test/hook"}, headers=KEY)
            name = (await extend(client, extension(source_uri))).json()["name"]
            uri = sample_uri(await wait_done(client, name))
            deliveries = (await client.get("/_sim/webhooks", headers=KEY)).json()["data"]
            assert [(d["operation_name"], d["video_uri"]) for d in deliveries] == [(name, uri)]

    async def test_a_source_expiring_before_the_extension_starts_ends_it_with_an_error(self) -> None:
        async with gemini_sim(ttl_seconds=172800) as client:
            source_name = await create(client, body(durationSeconds=4))
            source_uri = sample_uri(await wait_done(client, source_name))
            await client.patch("/_sim/config", json={"queue_seconds": 0.3}, headers=KEY)
            response = await extend(client, extension(source_uri))
            assert response.status_code == 200, response.text
            expired = await client.post(f"/_sim/operations/{source_name.rsplit('/', 1)[1]}/expire", headers=KEY)
            assert expired.status_code == 200
            operation = await wait_done(client, response.json()["name"])
            assert operation["error"]["status"] == "INTERNAL"

    async def test_a_synthetic_source_extends_synthetically(self) -> None:
        async with gemini_sim(synthetic_asset_bytes=70_000) as client:
            source_uri = await rendered(client)
            uri = sample_uri(await wait_done(client, (await extend(client, extension(source_uri))).json()["name"]))
            mp4 = await download(client, uri)
            assert len(mp4.content) == 70_000 and mp4.content[4:8] == b"ftyp"


class TestRefused:
    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"resolution": "1080p"}, id="1080p-output"),
            pytest.param({"durationSeconds": 7}, id="duration-7"),
            pytest.param({"durationSeconds": 4}, id="duration-4"),
            pytest.param({"aspectRatio": "9:16"}, id="aspect-not-the-sources"),
            pytest.param({"sampleCount": 2}, id="two-samples"),
            pytest.param({"seed": 3}, id="unknown-parameter"),
        ],
    )
    async def test_parameters_veo_does_not_take_for_an_extension(self, change: dict[str, Any]) -> None:
        async with gemini_sim() as client:
            source_uri = await rendered(client)
            assert_google_error(await extend(client, extension(source_uri, **change)), 400, "INVALID_ARGUMENT")
            assert (await stats(client))["operations_created"] == 1

    @pytest.mark.parametrize(
        "video",
        [
            pytest.param({"uri": f"{BASE_URL}/v1beta/files/doesnotexist:download?alt=media"}, id="unknown-file"),
            pytest.param({"uri": "gs://bucket/cat.mp4"}, id="not-a-generated-file"),
            pytest.param({"uri": "https://example.com/cat.mp4"}, id="some-url"),
            pytest.param({"encodedVideo": "AAAA"}, id="bytes-only"),
            pytest.param({"uri": 7}, id="uri-not-a-string"),
            pytest.param("a-string", id="not-an-object"),
        ],
    )
    async def test_a_video_that_is_no_veo_file_of_ours(self, video: object) -> None:
        async with gemini_sim() as client:
            payload = {"instances": [{"prompt": "go on", "video": video}], "parameters": {"resolution": "720p"}}
            assert_google_error(await extend(client, payload), 400, "INVALID_ARGUMENT")
            assert (await stats(client))["operations_created"] == 0

    async def test_a_1080p_source(self) -> None:
        async with gemini_sim() as client:
            source_uri = await rendered(client, seconds=8, resolution="1080p")
            message = assert_google_error(await extend(client, extension(source_uri)), 400, "INVALID_ARGUMENT")
            assert "720p" in message

    async def test_a_model_that_cannot_extend(self) -> None:
        async with gemini_sim() as client:
            source_uri = await rendered(client)
            for model in ("veo-3.0-generate-001", "veo-2.0-generate-001"):
                response = await extend(client, extension(source_uri), model=model)
                assert_google_error(response, 400, "INVALID_ARGUMENT")

    async def test_an_expired_source(self) -> None:
        async with gemini_sim() as client:
            name = await create(client, body(durationSeconds=4))
            source_uri = sample_uri(await wait_done(client, name))
            assert (await client.post(f"/_sim/operations/{name.rsplit('/', 1)[1]}/expire", headers=KEY)).is_success
            message = assert_google_error(await extend(client, extension(source_uri)), 400, "INVALID_ARGUMENT")
            assert "expired" in message

    async def test_a_source_that_has_no_video(self) -> None:
        async with gemini_sim(queue_seconds=30) as client:
            running = await create(client)
            simulator = simulator_of(client)
            operation = simulator.store.by_name(running)
            uri = f"{BASE_URL}/v1beta/files/{operation.file_id}:download?alt=media"
            assert_google_error(await extend(client, extension(uri)), 400, "INVALID_ARGUMENT")
        async with gemini_sim(blocked_words=["forbidden"]) as client:
            filtered = await create(client, body("forbidden"))
            await wait_done(client, filtered)
            operation = simulator_of(client).store.by_name(filtered)
            uri = f"{BASE_URL}/v1beta/files/{operation.file_id}:download?alt=media"
            assert_google_error(await extend(client, extension(uri)), 400, "INVALID_ARGUMENT")

    async def test_a_source_longer_than_141_seconds(self) -> None:
        async with gemini_sim() as client:
            name = await create(client, body(durationSeconds=4))
            source_uri = sample_uri(await wait_done(client, name))
            simulator_of(client).store.by_name(name).duration_seconds = 142  # as if extended 20 times
            message = assert_google_error(await extend(client, extension(source_uri)), 400, "INVALID_ARGUMENT")
            assert "141" in message

    async def test_an_image_beside_the_video(self) -> None:
        async with gemini_sim() as client:
            payload = extension(await rendered(client))
            payload["instances"][0]["image"] = image_part(png((64, 64), (1, 2, 3)))
            assert_google_error(await extend(client, payload), 400, "INVALID_ARGUMENT")


class TestTheAdapterAgainstTheSimulator:
    async def test_the_gateways_veo_adapter_extends_a_render(self) -> None:
        async with gemini_sim() as client:
            source_name = await create(client, body(durationSeconds=4))
            await wait_done(client, source_name)
            transport = client._transport
            settings = UpstreamSettings(kind="gemini", base_url=BASE_URL, api_key=API_KEY)
            adapter = GeminiAdapter(settings, profile="veo", transport=transport, allow_http_redirects=True)
            try:
                command = ExtendCommand(
                    prompt="and then it snows",
                    model=MODEL,
                    seconds="7",
                    source=SourceVideo(upstream_id=source_name, size="1280x720", seconds="4"),
                )
                started = await adapter.extend_video(command)
                assert (started.status, started.seconds, started.size) == ("in_progress", "11", "1280x720")
                await wait_done(client, started.id)
                assert (await adapter.retrieve_video(started.id)).status == "completed"
            finally:
                await adapter.aclose()
            operation = simulator_of(client).store.by_name(started.id)
            assert operation.extends == simulator_of(client).store.by_name(source_name).id
            assert operation.duration_seconds == 11
