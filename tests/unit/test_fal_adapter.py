"""The fal adapter's mapping, against scripted fal answers (no network): the input each model family gets,
what is refused before any call, how each state and ending of a queue request becomes OpenAI's video object,
and where the key goes. tests/unit/simulator/test_fal_simulator.py and tests/integration/test_fal_profile.py
drive the same adapter against the simulator, written from fal's documented contract."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping

import httpx
import pytest
from pydantic import SecretStr

from app.core.config import UpstreamSettings
from app.core.errors import InvalidRequest, RateLimited, ResourceNotFound, UpstreamError
from app.upstream.client import UpstreamRejected
from app.upstream.fal import FalAdapter, upstream_ids_for_request
from app.upstream.reference import PARAM, SubmissionReferences
from app.upstream.schemas import CreateVideoCommand, ImageInput

REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
VEO = "fal-ai/veo3.1"
KLING_T2V = "fal-ai/kling-video/v2.5-turbo/pro/text-to-video"
KLING_I2V = "fal-ai/kling-video/v2.5-turbo/pro/image-to-video"
UPSTREAM_ID = f"fal-ai/veo3.1:{REQUEST_ID}"
VIDEO_URL = "https://v3.fal.media/files/rabbit/abc_output.mp4"
Handler = Callable[[httpx.Request], httpx.Response]


def adapter_with(
    handler: Handler, *, allow_http: bool = False, **overrides: object
) -> tuple[FalAdapter, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = UpstreamSettings(
        kind="fal",
        base_url="https://queue.fal.test",
        api_key="fal-secret",
        retry_base_seconds=0,
        retry_max_seconds=0,
        **overrides,
    )
    adapter = FalAdapter(
        settings, profile="fal", transport=httpx.MockTransport(record), allow_http_redirects=allow_http
    )
    return adapter, seen


def command(**changes: object) -> CreateVideoCommand:
    fields: dict[str, object] = {"prompt": "a fox", "model": VEO, "seconds": "8", "size": "1280x720"}
    fields.update(changes)
    return CreateVideoCommand(**fields)  # type: ignore[arg-type]


def image(width: int = 1920, height: int = 1080) -> ImageInput:
    return ImageInput(data=b"\x89PNGfake", content_type="image/png", filename="a.png", width=width, height=height)


def submitted(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"request_id": REQUEST_ID, "status_url": "ignored"})


def queue(status: Mapping[str, object], result: httpx.Response | None = None) -> Handler:
    """A status answer for `.../status`, and `result` for the result URL."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json=status)
        if result is not None and request.url.path.endswith(f"/requests/{REQUEST_ID}"):
            return result
        return httpx.Response(200, content=b"mp4-bytes")

    return handle


COMPLETED = {"status": "COMPLETED", "metrics": {"inference_time": 40.2}}
WITH_VIDEO = httpx.Response(200, json={"video": {"url": VIDEO_URL, "content_type": "video/mp4"}, "seed": 7})


class TestCreate:
    async def test_create_submits_to_the_endpoint_with_the_key_and_our_webhook(self) -> None:
        adapter, seen = adapter_with(submitted, webhook_url="https://gw.test/webhooks/fal")
        video = await adapter.create_video(command())
        await adapter.aclose()
        [request] = seen
        assert (request.method, request.url.path) == ("POST", "/fal-ai/veo3.1")
        assert request.url.params["fal_webhook"] == "https://gw.test/webhooks/fal"
        assert request.headers["authorization"] == "Key fal-secret"
        assert json.loads(request.content) == {
            "prompt": "a fox",
            "duration": "8s",
            "aspect_ratio": "16:9",
            "resolution": "720p",
        }
        # The request id alone cannot be polled: the app path travels with it.
        assert (video.id, video.status, video.model) == (UPSTREAM_ID, "queued", VEO)

    async def test_no_webhook_is_asked_for_when_the_profile_has_no_receiver(self) -> None:
        adapter, seen = adapter_with(submitted)
        await adapter.create_video(command())
        await adapter.aclose()
        assert "fal_webhook" not in seen[0].url.params

    async def test_the_webhook_url_carries_our_video_id_under_a_tag_only_this_profile_makes(self) -> None:
        adapter, seen = adapter_with(submitted, webhook_url="https://gw.test/webhooks/fal")
        await adapter.create_video(command(reference="video_abc123"))
        await adapter.aclose()
        url = httpx.URL(seen[0].url.params["fal_webhook"])
        assert (url.host, url.path) == ("gw.test", "/webhooks/fal")
        assert SubmissionReferences(SecretStr("fal-secret")).video_id_of(url.params[PARAM]) == "video_abc123"
        # fal's webhook names the request only; our upstream id adds the model's app.
        assert adapter.called_back_id("req-1", model=VEO) == "fal-ai/veo3.1:req-1"

    @pytest.mark.parametrize(
        ("model", "seconds", "size", "expected", "app"),
        [
            (KLING_T2V, "10", "1080x1920", {"duration": "10", "aspect_ratio": "9:16"}, "fal-ai/kling-video"),
            (
                "fal-ai/minimax/hailuo-02/standard/text-to-video",
                "6",
                "1366x768",
                {"duration": "6"},
                "fal-ai/minimax",
            ),
            ("fal-ai/minimax/hailuo-02/pro/text-to-video", "6", "1920x1080", {}, "fal-ai/minimax"),
            (
                "fal-ai/bytedance/seedance/v1/pro/text-to-video",
                "5",
                "854x480",
                {"duration": "5", "aspect_ratio": "16:9", "resolution": "480p"},
                "fal-ai/bytedance",
            ),
            (
                "fal-ai/wan/v2.2-a14b/text-to-video",
                "5",
                "480x832",
                {"num_frames": 81, "frames_per_second": 16, "aspect_ratio": "9:16", "resolution": "480p"},
                "fal-ai/wan",
            ),
            (
                "fal-ai/luma-dream-machine/ray-2",
                "9",
                "1920x1080",
                {"duration": "9s", "aspect_ratio": "16:9", "resolution": "1080p"},
                "fal-ai/luma-dream-machine",
            ),
        ],
    )
    async def test_each_family_gets_its_own_duration_and_size_fields(
        self, model: str, seconds: str, size: str, expected: dict[str, object], app: str
    ) -> None:
        adapter, seen = adapter_with(submitted)
        video = await adapter.create_video(command(model=model, seconds=seconds, size=size))
        await adapter.aclose()
        assert json.loads(seen[0].content) == {"prompt": "a fox", **expected}
        assert seen[0].url.path == f"/{model}"
        assert video.id == f"{app}:{REQUEST_ID}"

    async def test_an_image_goes_as_a_data_uri_to_an_image_to_video_endpoint(self) -> None:
        adapter, seen = adapter_with(submitted)
        await adapter.create_video(command(model=KLING_I2V, seconds="5", size="1920x1080", image=image()))
        await adapter.aclose()
        body = json.loads(seen[0].content)
        assert body["image_url"] == "data:image/png;base64," + base64.b64encode(b"\x89PNGfake").decode()
        # Kling's image-to-video takes the frame's shape: no aspect ratio is sent.
        assert body == {"prompt": "a fox", "duration": "5", "image_url": body["image_url"]}

    async def test_veo_image_to_video_keeps_its_aspect_ratio_and_resolution(self) -> None:
        adapter, seen = adapter_with(submitted)
        model = "fal-ai/veo3.1/image-to-video"
        await adapter.create_video(command(model=model, seconds="6", size="720x1280", image=image(300, 300)))
        await adapter.aclose()
        body = json.loads(seen[0].content)
        assert (body["aspect_ratio"], body["resolution"], body["duration"]) == ("9:16", "720p", "6s")
        assert seen[0].url.path == "/fal-ai/veo3.1/image-to-video"

    async def test_a_create_answer_without_a_request_id_is_never_retried(self) -> None:
        adapter, seen = adapter_with(lambda _r: httpx.Response(200, json={"status": "IN_QUEUE"}))
        with pytest.raises(UpstreamError) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.headers.get("x-should-retry") == "false"
        assert len(seen) == 1

    async def test_a_request_id_that_could_leave_the_path_is_refused(self) -> None:
        adapter, _ = adapter_with(lambda _r: httpx.Response(200, json={"request_id": "../../x"}))
        with pytest.raises(UpstreamError) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.code == "upstream_bad_response"

    async def test_a_429_is_rate_limited_honouring_retry_after(self) -> None:
        adapter, seen = adapter_with(
            lambda _r: httpx.Response(429, json={"detail": "Rate limit exceeded"}, headers={"retry-after": "9"}),
            create_attempts=2,
        )
        with pytest.raises(RateLimited) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.headers["retry-after"] == "9"
        assert len(seen) == 2  # a 429 proves nothing was created: retried within the attempts

    async def test_a_422_detail_list_becomes_our_message_with_fals_type(self) -> None:
        detail = [{"loc": ["body", "duration"], "msg": "Input should be '4s'", "type": "enum", "input": "x"}]
        adapter, _ = adapter_with(lambda _r: httpx.Response(422, json={"detail": detail}))
        with pytest.raises(UpstreamRejected) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.status_code == 422
        assert caught.value.code == "enum"
        assert caught.value.message == "fal.ai refused the request: duration: Input should be '4s'"

    async def test_a_content_policy_refusal_at_submit_is_moderation_blocked(self) -> None:
        detail = [{"loc": ["body", "prompt"], "msg": "Flagged.", "type": "content_policy_violation"}]
        adapter, _ = adapter_with(lambda _r: httpx.Response(422, json={"detail": detail}))
        with pytest.raises(UpstreamRejected) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.code == "moderation_blocked"

    async def test_the_error_type_header_names_the_code_and_a_server_error_is_ours(self) -> None:
        adapter, _ = adapter_with(
            lambda _r: httpx.Response(
                503, json={"detail": "internals"}, headers={"x-fal-error-type": "runner_unavailable"}
            )
        )
        with pytest.raises(UpstreamError) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert "internals" not in caught.value.message
        assert caught.value.headers.get("x-should-retry") == "false"


class TestRefusedBeforeAnyCall:
    @pytest.mark.parametrize(
        ("changes", "param", "listed"),
        [
            ({"seconds": "5"}, "seconds", "'4', '6', '8'"),
            ({"size": "1792x1024"}, "size", "'1280x720'"),
            ({"size": "1920x1080", "seconds": "4"}, "seconds", "'8'"),
            ({"model": KLING_T2V, "seconds": "8", "size": "1920x1080"}, "seconds", "'5', '10'"),
            ({"model": KLING_T2V, "seconds": "5", "size": "1280x720"}, "size", "'1080x1080'"),
            ({"model": "fal-ai/wan/v2.2-a14b/text-to-video", "seconds": "8"}, "seconds", "'5', '10'"),
            ({"model": "fal-ai/luma-dream-machine/ray-2", "seconds": "10"}, "seconds", "'5', '9'"),
            ({"model": "fal-ai/sora-2/text-to-video"}, "model", "fal-ai/veo3.1"),
            ({"model": "fal-ai/veo3.1/reference-to-video"}, "model", "reference-to-video"),
            ({"model": "fal-ai/veo3.10"}, "model", "family"),
            ({"model": "Fal-AI/Veo3.1"}, "model", "endpoint id"),
            ({"image": image()}, "input_reference", "fal-ai/veo3.1/image-to-video"),
            ({"image_url": "https://img.test/a.png"}, "input_reference", "text-to-video"),
            (
                {"model": KLING_I2V, "seconds": "5", "size": "1920x1080"},
                "input_reference",
                "needs an 'input_reference'",
            ),
            (
                {"model": KLING_I2V, "seconds": "5", "size": "1080x1920", "image": image()},
                "input_reference",
                "aspect ratio",
            ),
        ],
    )
    def test_what_the_table_cannot_map_is_a_400_naming_the_param(
        self, changes: dict[str, object], param: str, listed: str
    ) -> None:
        adapter, seen = adapter_with(lambda _r: httpx.Response(500))
        with pytest.raises(InvalidRequest) as caught:
            adapter.check_create(command(**changes))
        assert caught.value.param == param
        assert listed in caught.value.message
        assert seen == []

    def test_a_link_is_taken_for_an_image_endpoint_since_the_gateway_fetches_it(self) -> None:
        adapter, _ = adapter_with(lambda _r: httpx.Response(500))
        adapter.check_create(
            command(model=KLING_I2V, seconds="5", size="1920x1080", image_url="https://img.test/a.png")
        )

    def test_remix_is_refused_saying_what_the_model_can_do(self) -> None:
        adapter, _ = adapter_with(lambda _r: httpx.Response(500))
        with pytest.raises(InvalidRequest) as caught:
            adapter.check_remix(VEO)
        assert caught.value.code == "unsupported_by_provider"
        assert "remix" not in caught.value.message.split("supports:")[1]

    async def test_recent_videos_is_none_as_fal_cannot_list(self) -> None:
        adapter, seen = adapter_with(lambda _r: httpx.Response(500))
        assert await adapter.recent_videos(created_since=0) is None
        await adapter.aclose()
        assert seen == []


class TestRetrieve:
    async def test_in_queue_is_queued_and_in_progress_reports_no_figure(self) -> None:
        adapter, seen = adapter_with(queue({"status": "IN_QUEUE", "queue_position": 3}))
        queued = await adapter.retrieve_video(UPSTREAM_ID)
        adapter2, _ = adapter_with(queue({"status": "IN_PROGRESS", "logs": []}))
        running = await adapter2.retrieve_video(UPSTREAM_ID)
        await adapter.aclose()
        await adapter2.aclose()
        # The status URL uses only the app path (the first two segments), as fal's does.
        assert seen[0].url.path == f"/fal-ai/veo3.1/requests/{REQUEST_ID}/status"
        assert seen[0].headers["authorization"] == "Key fal-secret"
        assert (queued.status, queued.progress) == ("queued", 0)
        assert (running.status, running.progress) == ("in_progress", None)

    async def test_completed_with_a_video_expires_a_day_after_we_see_it(self) -> None:
        adapter, seen = adapter_with(queue(COMPLETED, WITH_VIDEO))
        before = time.time()
        video = await adapter.retrieve_video(UPSTREAM_ID)
        await adapter.aclose()
        assert [request.url.path for request in seen] == [
            f"/fal-ai/veo3.1/requests/{REQUEST_ID}/status",
            f"/fal-ai/veo3.1/requests/{REQUEST_ID}",
        ]
        assert (video.status, video.progress) == ("completed", 100)
        assert video.completed_at is not None and video.expires_at is not None
        assert before - 1 <= video.completed_at <= time.time()
        assert video.expires_at - video.completed_at == 24 * 3600

    async def test_the_profiles_retention_replaces_the_default(self) -> None:
        adapter, _ = adapter_with(queue(COMPLETED, WITH_VIDEO), retention_seconds=3 * 3600)
        video = await adapter.retrieve_video(UPSTREAM_ID)
        await adapter.aclose()
        assert video.expires_at is not None and video.completed_at is not None
        assert video.expires_at - video.completed_at == 3 * 3600

    async def test_a_content_policy_error_in_the_status_is_moderation_blocked_with_fals_reason(self) -> None:
        status = {**COMPLETED, "error": "Flagged: violence.", "error_type": "content_policy_violation"}
        adapter, seen = adapter_with(queue(status, WITH_VIDEO))
        video = await adapter.retrieve_video(UPSTREAM_ID)
        await adapter.aclose()
        assert video.status == "failed" and video.error is not None
        assert (video.error.code, video.error.message) == ("moderation_blocked", "Flagged: violence.")
        assert len(seen) == 1  # a failure in the status needs no result read

    async def test_a_content_policy_refusal_of_the_result_is_moderation_blocked(self) -> None:
        detail = [{"loc": ["body", "prompt"], "msg": "The content was flagged.", "type": "content_policy_violation"}]
        adapter, _ = adapter_with(queue(COMPLETED, httpx.Response(422, json={"detail": detail})))
        video = await adapter.retrieve_video(UPSTREAM_ID)
        await adapter.aclose()
        assert video.status == "failed" and video.error is not None
        assert video.error.code == "moderation_blocked"
        assert "The content was flagged." in str(video.error.message)

    async def test_a_result_refused_otherwise_is_not_taken_for_a_failed_render(self) -> None:
        adapter, _ = adapter_with(
            queue(COMPLETED, httpx.Response(400, json={"detail": "Request is still in progress"}))
        )
        with pytest.raises(UpstreamRejected):
            await adapter.retrieve_video(UPSTREAM_ID)
        await adapter.aclose()

    async def test_another_error_keeps_fals_error_type(self) -> None:
        status = {**COMPLETED, "error": "Runner crashed.", "error_type": "runner_server_error"}
        adapter, _ = adapter_with(queue(status))
        video = await adapter.retrieve_video(UPSTREAM_ID)
        await adapter.aclose()
        assert video.error is not None
        assert (video.status, video.error.code) == ("failed", "runner_server_error")

    @pytest.mark.parametrize("result", [{"video": {}}, {"images": []}, {"video": {"url": ""}}])
    async def test_completed_without_a_video_url_is_never_completed(self, result: dict[str, object]) -> None:
        adapter, _ = adapter_with(queue(COMPLETED, httpx.Response(200, json=result)))
        video = await adapter.retrieve_video(UPSTREAM_ID)
        await adapter.aclose()
        assert video.status == "failed" and video.error is not None
        assert video.error.code == "upstream_no_output"

    async def test_an_unknown_status_is_a_bad_upstream_answer_not_a_500(self) -> None:
        adapter, _ = adapter_with(queue({"status": "MYSTERY"}))
        with pytest.raises(UpstreamError) as caught:
            await adapter.retrieve_video(UPSTREAM_ID)
        await adapter.aclose()
        assert caught.value.status_code == 502

    @pytest.mark.parametrize(
        "upstream_id",
        [
            REQUEST_ID,
            "fal-ai/veo3.1",
            f"fal-ai/veo3.1/fast:{REQUEST_ID}",
            f"../..:{REQUEST_ID}",
            "fal-ai/veo3.1:../../x",
            "fal-ai/veo3.1:a b",
            "fal-ai/veo3.1:" + "a" * 101,
        ],
    )
    async def test_an_id_not_of_our_form_never_reaches_a_url(self, upstream_id: str) -> None:
        adapter, seen = adapter_with(queue(COMPLETED, WITH_VIDEO))
        with pytest.raises(ResourceNotFound):
            await adapter.retrieve_video(upstream_id)
        await adapter.aclose()
        assert seen == []

    def test_the_webhook_lookup_ids_are_one_per_app_of_the_profile(self) -> None:
        models = [VEO, "fal-ai/veo3.1/image-to-video", KLING_T2V, "not a model"]
        assert upstream_ids_for_request(REQUEST_ID, models) == [
            f"fal-ai/veo3.1:{REQUEST_ID}",
            f"fal-ai/kling-video:{REQUEST_ID}",
        ]
        assert upstream_ids_for_request("../x", models) == []


class TestContent:
    async def test_the_cdn_file_is_fetched_without_the_key(self) -> None:
        adapter, seen = adapter_with(queue(COMPLETED, WITH_VIDEO))
        async with adapter.stream_content(UPSTREAM_ID, variant="video") as response:
            body = await response.aread()
        await adapter.aclose()
        assert body == b"mp4-bytes"
        assert [request.url.host for request in seen] == ["queue.fal.test", "queue.fal.test", "v3.fal.media"]
        assert seen[1].headers["authorization"] == "Key fal-secret"
        assert "authorization" not in seen[2].headers

    @pytest.mark.parametrize(
        "url",
        [
            "https://evil.test/files/x.mp4",
            "https://fal.media.evil.test/x.mp4",
            "http://v3.fal.media/x.mp4",
            "https://169.254.169.254/latest/meta-data",
        ],
    )
    async def test_a_file_anywhere_else_is_not_fetched(self, url: str) -> None:
        result = httpx.Response(200, json={"video": {"url": url}})
        adapter, seen = adapter_with(queue(COMPLETED, result))
        with pytest.raises(UpstreamError) as caught:
            async with adapter.stream_content(UPSTREAM_ID, variant="video"):
                pass
        await adapter.aclose()
        assert caught.value.code == "redirect_not_allowed"
        assert all(request.url.host == "queue.fal.test" for request in seen)

    async def test_a_listed_host_over_http_is_fetched_in_dev_mode_only(self) -> None:
        result = httpx.Response(200, json={"video": {"url": "http://files.sim.test/f/output.mp4"}})
        adapter, seen = adapter_with(
            queue(COMPLETED, result), allow_http=True, content_redirect_hosts=["files.sim.test"]
        )
        async with adapter.stream_content(UPSTREAM_ID, variant="video") as response:
            assert await response.aread() == b"mp4-bytes"
        await adapter.aclose()
        assert "authorization" not in seen[-1].headers
        strict, _ = adapter_with(queue(COMPLETED, result), content_redirect_hosts=["files.sim.test"])
        with pytest.raises(UpstreamError):
            async with strict.stream_content(UPSTREAM_ID, variant="video"):
                pass
        await strict.aclose()

    async def test_a_cdn_redirect_elsewhere_is_refused(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "v3.fal.media":
                return httpx.Response(302, headers={"location": "https://evil.test/x"})
            return queue(COMPLETED, WITH_VIDEO)(request)

        adapter, seen = adapter_with(handler)
        with pytest.raises(UpstreamError) as caught:
            async with adapter.stream_content(UPSTREAM_ID, variant="video"):
                pass
        await adapter.aclose()
        assert caught.value.code == "redirect_not_allowed"
        assert "evil.test" not in [request.url.host for request in seen]

    async def test_nothing_is_served_before_completion_nor_image_variants(self) -> None:
        adapter, seen = adapter_with(queue({"status": "IN_PROGRESS"}))
        with pytest.raises(ResourceNotFound):
            async with adapter.stream_content(UPSTREAM_ID, variant="video"):
                pass
        with pytest.raises(ResourceNotFound) as caught:
            async with adapter.stream_content(UPSTREAM_ID, variant="thumbnail"):
                pass
        await adapter.aclose()
        assert caught.value.code == "variant_not_ready"
        assert len(seen) == 1


class TestDelete:
    async def test_a_queued_render_is_cancelled(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.method == "PUT":
                return httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"})
            return httpx.Response(200, json={"status": "IN_QUEUE", "queue_position": 0})

        adapter, seen = adapter_with(handler)
        await adapter.delete_video(UPSTREAM_ID)
        await adapter.aclose()
        assert [(r.method, r.url.path) for r in seen][-1] == ("PUT", f"/fal-ai/veo3.1/requests/{REQUEST_ID}/cancel")

    @pytest.mark.parametrize("state", ["IN_PROGRESS", "COMPLETED"])
    async def test_a_started_or_finished_render_is_deleted_locally_only(self, state: str) -> None:
        adapter, seen = adapter_with(queue({"status": state}))
        await adapter.delete_video(UPSTREAM_ID)
        await adapter.aclose()
        assert [request.method for request in seen] == ["GET"]

    async def test_a_cancel_refused_because_the_render_just_started_is_fine(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.method == "PUT":
                return httpx.Response(400, json={"detail": "Request cannot be cancelled."})
            return httpx.Response(200, json={"status": "IN_QUEUE", "queue_position": 0})

        adapter, _ = adapter_with(handler)
        await adapter.delete_video(UPSTREAM_ID)  # no exception
        await adapter.aclose()
