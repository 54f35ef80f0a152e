"""The Veo adapter's mapping, against scripted Google answers (no network): what it sends, and how every
ending of an operation becomes OpenAI's video object. The simulator-driven e2e test covers the same path
against a fake written from Google's contract."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import httpx
import pytest

from app.core.config import UpstreamSettings
from app.core.errors import InvalidRequest, RateLimited, ResourceNotFound, UpstreamError
from app.upstream.client import UpstreamRejected
from app.upstream.gemini import GeminiAdapter
from app.upstream.schemas import CreateVideoCommand, ImageInput

NAME = "models/veo-3.1-generate-preview/operations/op123"
FILE_URI = "https://gen.test/v1beta/files/abc:download?alt=media"


def adapter_with(
    handler: Callable[[httpx.Request], httpx.Response], **overrides: object
) -> tuple[GeminiAdapter, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = UpstreamSettings(
        kind="gemini",
        base_url="https://gen.test",
        api_key="goog-secret",
        retry_base_seconds=0,
        retry_max_seconds=0,
        **overrides,
    )
    return GeminiAdapter(settings, profile="veo", transport=httpx.MockTransport(record)), seen


def command(**changes: object) -> CreateVideoCommand:
    fields: dict[str, object] = {"prompt": "a fox", "model": "veo-3.1-generate-preview", "seconds": "8"}
    fields["size"] = "1280x720"
    fields.update(changes)
    return CreateVideoCommand(**fields)  # type: ignore[arg-type]


def done(response: Mapping[str, object]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _r: httpx.Response(200, json={"name": NAME, "done": True, "response": response})


def samples(uri: str = FILE_URI) -> dict[str, object]:
    return {"generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}}


class TestCreate:
    async def test_create_sends_googles_body_with_the_key_header(self) -> None:
        adapter, seen = adapter_with(lambda _r: httpx.Response(200, json={"name": NAME}))
        image = ImageInput(data=b"\x89PNGfake", content_type="image/png", filename="a.png", width=10, height=10)
        video = await adapter.create_video(command(size="720x1280", seconds="6", image=image))
        await adapter.aclose()
        request = seen[0]
        assert request.url.path == "/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
        assert request.headers["x-goog-api-key"] == "goog-secret"
        assert "authorization" not in request.headers
        body = json.loads(request.content)
        assert body["parameters"] == {
            "durationSeconds": 6,
            "aspectRatio": "9:16",
            "resolution": "720p",
            "sampleCount": 1,
        }
        assert body["instances"][0]["prompt"] == "a fox"
        assert base64.b64decode(body["instances"][0]["image"]["bytesBase64Encoded"]) == b"\x89PNGfake"
        assert body["instances"][0]["image"]["mimeType"] == "image/png"
        assert video.id == NAME
        assert video.status == "in_progress"

    @pytest.mark.parametrize(("size", "expected"), [("1920x1080", ("16:9", "1080p")), ("1080x1920", ("9:16", "1080p"))])
    async def test_1080p_sizes_map_to_1080p(self, size: str, expected: tuple[str, str]) -> None:
        adapter, seen = adapter_with(lambda _r: httpx.Response(200, json={"name": NAME}))
        await adapter.create_video(command(size=size))
        await adapter.aclose()
        parameters = json.loads(seen[0].content)["parameters"]
        assert (parameters["aspectRatio"], parameters["resolution"]) == expected

    @pytest.mark.parametrize(
        ("changes", "param", "listed"),
        [
            ({"seconds": "12"}, "seconds", "'4', '6', '8'"),
            ({"seconds": "5"}, "seconds", "'4', '6', '8'"),
            ({"size": "1792x1024"}, "size", "'720x1280', '1280x720', '1080x1920', '1920x1080'"),
            ({"size": "1920x1080", "seconds": "4"}, "seconds", "'8'"),
            ({"image_url": "https://img.test/a.png"}, "input_reference.image_url", "data:"),
        ],
    )
    def test_what_veo_cannot_render_is_a_400_naming_the_param(
        self, changes: dict[str, object], param: str, listed: str
    ) -> None:
        adapter, seen = adapter_with(lambda _r: httpx.Response(500))
        with pytest.raises(InvalidRequest) as caught:
            adapter.check_create(command(**changes))
        assert caught.value.param == param
        assert listed in caught.value.message
        assert seen == []

    def test_remix_is_refused_saying_what_the_model_can_do(self) -> None:
        adapter, _ = adapter_with(lambda _r: httpx.Response(500))
        with pytest.raises(InvalidRequest) as caught:
            adapter.check_remix("veo-3.1-generate-preview")
        assert caught.value.code == "unsupported_by_provider"
        assert "create" in caught.value.message

    @pytest.mark.parametrize(
        "answer",
        [httpx.Response(200, json={"nope": 1}), httpx.Response(200, text="<html>accepted</html>")],
        ids=["no name", "not json"],
    )
    async def test_a_create_answer_without_an_operation_name_is_never_retried(self, answer: httpx.Response) -> None:
        adapter, seen = adapter_with(lambda _r: answer)
        with pytest.raises(UpstreamError) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.headers.get("x-should-retry") == "false"
        assert len(seen) == 1

    async def test_googles_429_envelope_becomes_a_429_with_retry_after(self) -> None:
        body = {"error": {"code": 429, "message": "Resource has been exhausted.", "status": "RESOURCE_EXHAUSTED"}}
        adapter, seen = adapter_with(
            lambda _r: httpx.Response(429, json=body, headers={"retry-after": "7"}), create_attempts=2
        )
        with pytest.raises(RateLimited) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.headers["retry-after"] == "7"
        assert "exhausted" in caught.value.message
        assert len(seen) == 2  # a 429 proves nothing was created: retried within the attempts

    async def test_a_400_from_google_passes_its_message_and_status(self) -> None:
        body = {"error": {"code": 400, "message": "Bad prompt.", "status": "INVALID_ARGUMENT"}}
        adapter, _ = adapter_with(lambda _r: httpx.Response(400, json=body))
        with pytest.raises(UpstreamRejected) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.message == "Bad prompt."
        assert caught.value.code == "invalid_argument"


class TestRetrieve:
    async def test_not_done_is_in_progress_without_a_progress_figure(self) -> None:
        adapter, seen = adapter_with(lambda _r: httpx.Response(200, json={"name": NAME}))
        video = await adapter.retrieve_video(NAME)
        await adapter.aclose()
        assert seen[0].url.path == f"/v1beta/{NAME}"
        assert (video.status, video.progress) == ("in_progress", None)

    async def test_done_with_a_sample_is_completed_and_expires_two_days_after_creation(self) -> None:
        operation = {
            "name": NAME,
            "done": True,
            "metadata": {"createTime": "2026-11-29T10:00:00Z"},
            "response": samples(),
        }
        adapter, _ = adapter_with(lambda _r: httpx.Response(200, json=operation))
        video = await adapter.retrieve_video(NAME)
        await adapter.aclose()
        assert video.status == "completed"
        created = datetime(2026, 11, 29, 10, tzinfo=UTC).timestamp()
        assert video.expires_at == created + 2 * 24 * 3600

    async def test_done_with_an_error_is_failed_with_googles_status_and_message(self) -> None:
        error = {"code": 13, "message": "Internal error while generating.", "status": "INTERNAL"}
        adapter, _ = adapter_with(lambda _r: httpx.Response(200, json={"name": NAME, "done": True, "error": error}))
        video = await adapter.retrieve_video(NAME)
        await adapter.aclose()
        assert video.status == "failed"
        assert video.error is not None
        assert (video.error.code, video.error.message) == ("internal", "Internal error while generating.")

    async def test_a_moderation_block_is_failed_moderation_blocked_with_googles_reason(self) -> None:
        reason = "Blocked by safety filters. You have not been charged for this attempt."
        generated = {"generateVideoResponse": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [reason]}}
        adapter, _ = adapter_with(done(generated))
        video = await adapter.retrieve_video(NAME)
        await adapter.aclose()
        assert video.status == "failed"
        assert video.error is not None
        assert (video.error.code, video.error.message) == ("moderation_blocked", reason)

    async def test_done_without_any_video_is_never_completed(self) -> None:
        adapter, _ = adapter_with(done({"generateVideoResponse": {}}))
        video = await adapter.retrieve_video(NAME)
        await adapter.aclose()
        assert video.status == "failed"
        assert video.error is not None and video.error.code == "upstream_no_output"

    async def test_an_id_that_is_not_an_operation_name_never_reaches_a_url(self) -> None:
        adapter, seen = adapter_with(lambda _r: httpx.Response(200, json={}))
        with pytest.raises(ResourceNotFound):
            await adapter.retrieve_video("../../v1beta/files/x")
        await adapter.aclose()
        assert seen == []


class TestContent:
    async def test_the_key_goes_to_the_api_host_and_not_across_the_redirect(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == f"/v1beta/{NAME}":
                return done(samples())(request)
            if request.url.host == "gen.test":
                return httpx.Response(302, headers={"location": "https://dl.test/blob?sig=1"})
            return httpx.Response(200, content=b"mp4-bytes")

        adapter, seen = adapter_with(handler, content_redirect_hosts=["dl.test"])
        async with adapter.stream_content(NAME, variant="video") as response:
            body = await response.aread()
        await adapter.aclose()
        assert body == b"mp4-bytes"
        assert [request.url.host for request in seen] == ["gen.test", "gen.test", "dl.test"]
        assert seen[1].headers["x-goog-api-key"] == "goog-secret"
        assert "x-goog-api-key" not in seen[2].headers

    async def test_a_sample_on_another_host_is_not_fetched_with_the_key(self) -> None:
        adapter, seen = adapter_with(done(samples("https://evil.test/v1beta/files/abc:download")))
        with pytest.raises(UpstreamError) as caught:
            async with adapter.stream_content(NAME, variant="video"):
                pass
        await adapter.aclose()
        assert caught.value.code == "redirect_not_allowed"
        assert [request.url.host for request in seen] == ["gen.test"]

    async def test_image_variants_are_not_served_upstream(self) -> None:
        adapter, seen = adapter_with(done(samples()))
        with pytest.raises(ResourceNotFound) as caught:
            async with adapter.stream_content(NAME, variant="thumbnail"):
                pass
        await adapter.aclose()
        assert caught.value.code == "variant_not_ready"
        assert seen == []
