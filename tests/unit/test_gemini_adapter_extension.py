"""The Veo adapter's extension (`POST /v1/videos/extensions` on a `kind: gemini` profile), against scripted Google
answers (no network): which models can extend what, the wire form of an extension (the source operation's
sample URI as `instances[0].video`), what is refused before anything is paid for, and that the paid call is
never re-sent. The simulator-driven tests (tests/unit/simulator/test_gemini_extension.py) run the same path
against a fake written from Google's contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.core.errors import InvalidRequest, ResourceNotFound, UpstreamError
from app.upstream.capabilities import check_extend
from app.upstream.client import UpstreamRejected
from app.upstream.schemas import CreateVideoCommand, ExtendCommand, SourceVideo, VideoUpload
from tests.unit.test_gemini_adapter import FILE_URI, NAME, adapter_with, samples

SOURCE = NAME  # a completed Veo 3.1 render of this profile
EXTENSION = "models/veo-3.1-generate-preview/operations/ext456"
MODEL = "veo-3.1-generate-preview"


def extend(
    *, size: str = "1280x720", seconds: str = "8", prompt: str = "the fox jumps", upstream_id: str | None = SOURCE
) -> ExtendCommand:
    return ExtendCommand(
        prompt=prompt,
        model=MODEL,
        seconds="7",
        source=SourceVideo(upstream_id=upstream_id, size=size, seconds=seconds),
    )


def google(
    source: dict[str, object], answer: httpx.Response | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    """GET of the source operation → `source`; the extension's POST → `answer` (its operation name)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == f"/v1beta/{SOURCE}":
            return httpx.Response(200, json=source)
        if request.method == "POST":
            return answer if answer is not None else httpx.Response(200, json={"name": EXTENSION})
        return httpx.Response(404, json={"error": {"code": 404, "message": "nope", "status": "NOT_FOUND"}})

    return handle


def done_source(**fields: object) -> dict[str, object]:
    return {"name": SOURCE, "done": True, "response": samples(), **fields}


def posts(seen: list[httpx.Request]) -> list[httpx.Request]:
    return [request for request in seen if request.method == "POST"]


class TestCapabilities:
    @pytest.mark.parametrize(
        "model", ["veo-3.1-generate-preview", "veo-3.1-fast-generate-preview", "veo-3.1-lite-generate-preview"]
    )
    def test_veo_31_extends_720p_videos_by_7_seconds(self, model: str) -> None:
        adapter, _ = adapter_with(lambda _r: httpx.Response(500))
        capabilities = adapter.capabilities(model)
        assert capabilities.extend_seconds == ("7",)
        assert set(capabilities.extend_sizes) == {"1280x720", "720x1280"}
        assert capabilities.derive_from_upload is False
        assert "extend" in capabilities.operations()
        for size in ("1280x720", "720x1280"):
            check_extend(model, capabilities, seconds="7", source=SourceVideo(upstream_id=SOURCE, size=size))

    @pytest.mark.parametrize("model", ["veo-3.0-generate-001", "veo-3.0-fast-generate-001", "veo-2.0-generate-001"])
    def test_other_veo_models_cannot_extend(self, model: str) -> None:
        adapter, _ = adapter_with(lambda _r: httpx.Response(500))
        capabilities = adapter.capabilities(model)
        assert capabilities.extend_seconds == ()
        with pytest.raises(InvalidRequest) as caught:
            check_extend(model, capabilities, seconds="7", source=SourceVideo(upstream_id=SOURCE, size="1280x720"))
        assert (caught.value.status_code, caught.value.code) == (400, "unsupported_by_provider")
        assert "extend" not in capabilities.operations()

    @pytest.mark.parametrize("size", ["1920x1080", "1080x1920"])
    def test_a_1080p_source_is_a_400(self, size: str) -> None:
        adapter, _ = adapter_with(lambda _r: httpx.Response(500))
        with pytest.raises(InvalidRequest) as caught:
            check_extend(
                MODEL, adapter.capabilities(MODEL), seconds="7", source=SourceVideo(upstream_id=SOURCE, size=size)
            )
        assert (caught.value.status_code, caught.value.param) == (400, "video")
        assert "'1280x720'" in caught.value.message and size in caught.value.message

    def test_only_7_seconds_and_never_an_upload(self) -> None:
        adapter, _ = adapter_with(lambda _r: httpx.Response(500))
        capabilities = adapter.capabilities(MODEL)
        with pytest.raises(InvalidRequest) as caught:
            check_extend(MODEL, capabilities, seconds="8", source=SourceVideo(upstream_id=SOURCE, size="1280x720"))
        assert (caught.value.param, caught.value.code) == ("seconds", "invalid_value")
        assert "'7'" in caught.value.message
        upload = VideoUpload(data=b"mp4", filename="a.mp4", width=1280, height=720, duration_seconds=8.0)
        with pytest.raises(InvalidRequest) as caught:
            check_extend(MODEL, capabilities, seconds="7", source=SourceVideo(upload=upload, size="1280x720"))
        assert caught.value.code == "unsupported_by_provider"

    def test_creates_are_checked_as_before_on_every_model(self) -> None:
        adapter, _ = adapter_with(lambda _r: httpx.Response(500))
        for model in (MODEL, "veo-3.0-generate-001"):
            adapter.check_create(CreateVideoCommand(prompt="a", model=model, seconds="8", size="1920x1080"))
            with pytest.raises(InvalidRequest) as caught:
                adapter.check_create(CreateVideoCommand(prompt="a", model=model, seconds="4", size="1920x1080"))
            assert caught.value.param == "seconds"


class TestWireForm:
    @pytest.mark.parametrize(("size", "aspect_ratio"), [("1280x720", "16:9"), ("720x1280", "9:16")])
    async def test_the_sample_uri_of_the_source_goes_as_instances_video(self, size: str, aspect_ratio: str) -> None:
        adapter, seen = adapter_with(google(done_source()))
        video = await adapter.extend_video(extend(size=size))
        await adapter.aclose()
        read, sent = seen
        assert (read.method, read.url.path) == ("GET", f"/v1beta/{SOURCE}")
        assert (sent.method, sent.url.path) == ("POST", f"/v1beta/models/{MODEL}:predictLongRunning")
        assert sent.headers["x-goog-api-key"] == "goog-secret"
        assert json.loads(sent.content) == {
            "instances": [{"prompt": "the fox jumps", "video": {"uri": FILE_URI}}],
            "parameters": {"durationSeconds": 8, "aspectRatio": aspect_ratio, "resolution": "720p", "sampleCount": 1},
        }
        assert (video.id, video.status, video.model) == (EXTENSION, "in_progress", MODEL)
        # One video, the source followed by the new segment: the stitched length, the source's size.
        assert (video.seconds, video.size) == ("15", size)

    async def test_an_empty_prompt_is_left_out(self) -> None:
        adapter, seen = adapter_with(google(done_source()))
        await adapter.extend_video(extend(prompt=""))
        await adapter.aclose()
        assert json.loads(posts(seen)[0].content)["instances"] == [{"video": {"uri": FILE_URI}}]


class TestRefusedBeforePaying:
    async def test_a_source_without_a_sample_is_a_400_not_ready(self) -> None:
        filtered = {"generateVideoResponse": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["blocked"]}}
        adapter, seen = adapter_with(google(done_source(response=filtered)))
        with pytest.raises(InvalidRequest) as caught:
            await adapter.extend_video(extend())
        await adapter.aclose()
        assert (caught.value.status_code, caught.value.param, caught.value.code) == (400, "video.id", "video_not_ready")
        assert posts(seen) == []

    async def test_a_source_google_no_longer_keeps_is_a_400_expired(self) -> None:
        created = (datetime.now(UTC) - timedelta(days=3)).isoformat().replace("+00:00", "Z")
        adapter, seen = adapter_with(google(done_source(metadata={"createTime": created})))
        with pytest.raises(InvalidRequest) as caught:
            await adapter.extend_video(extend())
        await adapter.aclose()
        assert (caught.value.status_code, caught.value.code) == (400, "video_expired")
        assert posts(seen) == []

    async def test_a_source_within_googles_two_days_is_sent(self) -> None:
        created = (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z")
        adapter, seen = adapter_with(google(done_source(metadata={"createTime": created})))
        await adapter.extend_video(extend())
        await adapter.aclose()
        assert len(posts(seen)) == 1

    async def test_a_sample_on_another_host_is_never_sent(self) -> None:
        elsewhere = done_source(response=samples("https://evil.test/v1beta/files/abc:download?alt=media"))
        adapter, seen = adapter_with(google(elsewhere))
        with pytest.raises(UpstreamError):
            await adapter.extend_video(extend())
        await adapter.aclose()
        assert posts(seen) == []

    async def test_a_source_longer_than_141_seconds_is_a_400_with_no_call(self) -> None:
        adapter, seen = adapter_with(google(done_source()))
        with pytest.raises(InvalidRequest) as caught:
            await adapter.extend_video(extend(seconds="142"))
        await adapter.aclose()
        assert caught.value.status_code == 400 and "141" in caught.value.message
        assert seen == []

    async def test_an_upload_or_a_foreign_id_never_reaches_google(self) -> None:
        adapter, seen = adapter_with(google(done_source()))
        with pytest.raises(InvalidRequest):
            await adapter.extend_video(extend(upstream_id=None))
        with pytest.raises(ResourceNotFound):
            await adapter.extend_video(extend(upstream_id="../../files/x"))
        await adapter.aclose()
        assert seen == []


class TestPaidCall:
    @pytest.mark.parametrize(
        "answer",
        [httpx.Response(200, json={"nope": 1}), httpx.Response(200, text="<html>accepted</html>")],
        ids=["no name", "not json"],
    )
    async def test_an_answer_without_an_operation_name_is_never_retried(self, answer: httpx.Response) -> None:
        adapter, seen = adapter_with(google(done_source(), answer), create_attempts=3)
        with pytest.raises(UpstreamError) as caught:
            await adapter.extend_video(extend())
        await adapter.aclose()
        assert caught.value.headers.get("x-should-retry") == "false"
        assert len(posts(seen)) == 1

    async def test_a_server_error_is_not_re_sent(self) -> None:
        error = {"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}
        adapter, seen = adapter_with(google(done_source(), httpx.Response(500, json=error)), create_attempts=3)
        with pytest.raises(UpstreamError):
            await adapter.extend_video(extend())
        await adapter.aclose()
        assert len(posts(seen)) == 1

    async def test_googles_400_passes_its_message_and_status(self) -> None:
        error = {"error": {"code": 400, "message": "The video has expired.", "status": "INVALID_ARGUMENT"}}
        adapter, _ = adapter_with(google(done_source(), httpx.Response(400, json=error)))
        with pytest.raises(UpstreamRejected) as caught:
            await adapter.extend_video(extend())
        await adapter.aclose()
        assert (caught.value.message, caught.value.code) == ("The video has expired.", "invalid_argument")
