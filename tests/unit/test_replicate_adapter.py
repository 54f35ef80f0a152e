"""The Replicate adapter: what it sends and how every answer becomes OpenAI's video object.

Two halves: scripted answers (httpx `MockTransport`) for what a healthy simulator never says (odd statuses,
missing outputs, files on other hosts, malformed lists), and the Replicate simulator in process (ASGI) for the
round trip, so the adapter's requests are checked against a fake written from Replicate's contract.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from app.core.config import SimulatorSettings, UpstreamSettings
from app.core.errors import InvalidRequest, RateLimited, ResourceNotFound, UpstreamError
from app.simulator.replicate import create_replicate_simulator_app, replicate_simulator_running
from app.upstream.client import RECENT_PAGES, UpstreamRejected
from app.upstream.reference import PARAM, SubmissionReferences
from app.upstream.replicate import ReplicateAdapter
from app.upstream.schemas import CreateVideoCommand, ImageInput

TOKEN = "r8_secret_token"
PID = "gm3qorzdhgbfurvjtvhg6dckhu"
FILE_URL = "https://replicate.delivery/xezq/abc123/output.mp4"
CREATED = "2026-11-29T10:00:00.123456Z"
CREATED_TS = int(datetime(2026, 11, 29, 10, tzinfo=UTC).timestamp())
COMPLETED = "2026-11-29T10:01:40.5Z"
COMPLETED_TS = CREATED_TS + 100


def adapter_with(
    handler: Callable[[httpx.Request], httpx.Response], *, allow_http: bool = False, **overrides: object
) -> tuple[ReplicateAdapter, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    values: dict[str, Any] = {
        "kind": "replicate",
        "base_url": "https://api.replicate.test",
        "api_key": TOKEN,
        "retry_base_seconds": 0,
        "retry_max_seconds": 0,
        **overrides,
    }
    adapter = ReplicateAdapter(
        UpstreamSettings(**values),
        profile="rep",
        transport=httpx.MockTransport(record),
        allow_http_redirects=allow_http,
    )
    return adapter, seen


def command(**changes: object) -> CreateVideoCommand:
    fields: dict[str, object] = {"prompt": "a fox", "model": "google/veo-3", "seconds": "8", "size": "1280x720"}
    fields.update(changes)
    return CreateVideoCommand(**fields)  # type: ignore[arg-type]


def png(width: int, height: int) -> ImageInput:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, format="PNG")
    return ImageInput(data=buffer.getvalue(), content_type="image/png", filename="a.png", width=width, height=height)


def prediction(status: str = "starting", **fields: object) -> dict[str, Any]:
    return {
        "id": PID,
        "model": "google/veo-3",
        "version": "a" * 64,
        "input": {"prompt": "a fox", "duration": 8, "aspect_ratio": "16:9", "resolution": "1080p"},
        "logs": "",
        "output": None,
        "data_removed": False,
        "error": None,
        "status": status,
        "created_at": CREATED,
        "started_at": None,
        "completed_at": None,
        "urls": {},
        **fields,
    }


def answer(body: object, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, json=body)


class TestCreate:
    async def test_a_create_sends_replicates_body_with_the_token_and_the_webhook(self) -> None:
        adapter, seen = adapter_with(answer(prediction(), 201), webhook_url="https://gw.test/webhooks/rep")
        video = await adapter.create_video(command(size="720x1280", seconds="6"))
        await adapter.aclose()
        [request] = seen
        assert (request.method, request.url.path) == ("POST", "/v1/models/google/veo-3/predictions")
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert "prefer" not in request.headers  # never `Prefer: wait`: a create answers at once
        assert json.loads(request.content) == {
            "input": {"prompt": "a fox", "duration": 6, "aspect_ratio": "9:16", "resolution": "720p"},
            "webhook": "https://gw.test/webhooks/rep",
            "webhook_events_filter": ["completed"],
        }
        assert (video.id, video.status, video.progress) == (PID, "queued", None)
        assert (video.model, video.prompt, video.seconds, video.size) == ("google/veo-3", "a fox", "6", "720x1280")
        assert video.created_at == CREATED_TS

    async def test_without_a_webhook_url_none_is_asked_for_and_v1_is_not_doubled(self) -> None:
        adapter, seen = adapter_with(answer(prediction(), 201), base_url="https://api.replicate.test/v1/")
        await adapter.create_video(command())
        await adapter.aclose()
        assert seen[0].url.path == "/v1/models/google/veo-3/predictions"
        assert set(json.loads(seen[0].content)) == {"input"}

    async def test_the_webhook_carries_our_video_id_under_a_tag_only_this_profile_makes(self) -> None:
        adapter, seen = adapter_with(answer(prediction(), 201), webhook_url="https://gw.test/webhooks/rep")
        await adapter.create_video(command(reference="video_abc123"))
        await adapter.aclose()
        url = httpx.URL(json.loads(seen[0].content)["webhook"])
        assert (url.host, url.path) == ("gw.test", "/webhooks/rep")
        assert SubmissionReferences(SecretStr(TOKEN)).video_id_of(url.params[PARAM]) == "video_abc123"

    @pytest.mark.parametrize(
        ("model", "seconds", "size", "expected"),
        [
            (
                "bytedance/seedance-1-pro",
                "10",
                "864x480",
                {"duration": 10, "aspect_ratio": "16:9", "resolution": "480p"},
            ),
            ("kwaivgi/kling-v2.1-master", "5", "1080x1080", {"duration": 5, "aspect_ratio": "1:1"}),
            ("minimax/hailuo-02", "10", "1366x768", {"duration": 10, "resolution": "768p"}),
            (
                "wan-video/wan-2.2-t2v-fast",
                "5",
                "480x832",
                {"num_frames": 81, "frames_per_second": 16, "aspect_ratio": "9:16", "resolution": "480p"},
            ),
        ],
    )
    async def test_each_family_maps_seconds_and_size_onto_its_own_fields(
        self, model: str, seconds: str, size: str, expected: dict[str, object]
    ) -> None:
        adapter, seen = adapter_with(answer(prediction(), 201))
        await adapter.create_video(command(model=model, seconds=seconds, size=size))
        await adapter.aclose()
        assert seen[0].url.path == f"/v1/models/{model}/predictions"
        assert json.loads(seen[0].content)["input"] == {"prompt": "a fox", **expected}

    @pytest.mark.parametrize(
        ("model", "size", "field"),
        [("google/veo-3-fast", "1280x720", "image"), ("kwaivgi/kling-v2.1", "1920x1080", "start_image")],
    )
    async def test_an_image_goes_as_a_data_uri_in_the_familys_field(self, model: str, size: str, field: str) -> None:
        adapter, seen = adapter_with(answer(prediction(), 201))
        image = png(*(int(side) for side in size.split("x")))
        await adapter.create_video(
            command(model=model, size=size, seconds="5" if "kling" in model else "8", image=image)
        )
        await adapter.aclose()
        sent = json.loads(seen[0].content)["input"]
        prefix = "data:image/png;base64,"
        assert sent[field].startswith(prefix)
        assert base64.b64decode(sent[field][len(prefix) :]) == image.data

    @pytest.mark.parametrize(
        ("changes", "param", "listed"),
        [
            ({"seconds": "5"}, "seconds", "'4', '6', '8'"),
            ({"size": "1792x1024"}, "size", "'1280x720', '720x1280', '1920x1080', '1080x1920'"),
            ({"size": "1920x1080", "seconds": "4"}, "seconds", "'8'"),
            ({"model": "minimax/hailuo-02", "size": "1920x1080", "seconds": "10"}, "seconds", "'6'"),
            (
                {"model": "wan-video/wan-2.2-t2v-fast", "seconds": "5", "image": png(1280, 720)},
                "input_reference",
                "text",
            ),
            (
                {"model": "wan-video/wan-2.2-t2v-fast", "seconds": "5", "image_url": "https://img.test/a.png"},
                "input_reference",
                "text only",
            ),
            ({"model": "kwaivgi/kling-v2.1", "seconds": "5"}, "input_reference", "required"),
            ({"model": "bytedance/seedance-1-lite", "seconds": "5", "image": png(64, 64)}, "input_reference", "64x64"),
            ({"model": "stability-ai/some-image-model"}, "model", "'google/veo-3'"),
        ],
    )
    def test_what_the_model_cannot_take_is_a_400_naming_the_param(
        self, changes: dict[str, object], param: str, listed: str
    ) -> None:
        adapter, seen = adapter_with(answer({}, 500))
        with pytest.raises(InvalidRequest) as caught:
            adapter.check_create(command(**changes))
        assert caught.value.param == param
        assert listed in caught.value.message
        assert seen == []

    def test_a_link_is_taken_where_the_family_takes_images_and_veo_takes_any_image_size(self) -> None:
        adapter, _ = adapter_with(answer({}, 500))
        adapter.check_create(command(image_url="https://img.test/a.png"))  # the gateway fetches it, then checks again
        adapter.check_create(command(image=png(300, 500)))
        adapter.check_create(command(model="kwaivgi/kling-v2.1", seconds="10", image_url="https://img.test/a.png"))

    async def test_remix_is_refused_saying_what_the_model_can_do(self) -> None:
        adapter, seen = adapter_with(answer({}, 500))
        with pytest.raises(InvalidRequest) as caught:
            adapter.check_remix("google/veo-3")
        assert caught.value.code == "unsupported_by_provider"
        assert "create" in caught.value.message
        with pytest.raises(UpstreamError):
            await adapter.remix_video(PID, prompt="again")
        await adapter.aclose()
        assert seen == []

    @pytest.mark.parametrize("body", [{"status": "starting"}, {"id": "../../v1/account"}, ["not", "an", "object"]])
    async def test_a_create_answer_without_a_usable_id_is_never_retried(self, body: object) -> None:
        adapter, seen = adapter_with(answer(body, 201))
        with pytest.raises(UpstreamError) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.headers.get("x-should-retry") == "false"
        assert len(seen) == 1

    async def test_a_created_prediction_with_an_unknown_status_is_kept_as_queued(self) -> None:
        adapter, _ = adapter_with(answer(prediction("warming_up"), 201))
        video = await adapter.create_video(command())
        await adapter.aclose()
        assert (video.id, video.status) == (PID, "queued")  # its id is what matters: polls settle the rest

    async def test_replicates_429_becomes_a_429_with_its_retry_after(self) -> None:
        body = {"detail": "Request was throttled. Your rate limit resets in ~30s."}
        adapter, seen = adapter_with(
            lambda _r: httpx.Response(429, json=body, headers={"retry-after": "7"}), create_attempts=2
        )
        with pytest.raises(RateLimited) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.headers["retry-after"] == "7"
        assert caught.value.message == body["detail"]
        assert len(seen) == 2  # a 429 proves nothing was created: retried within the attempts

    async def test_a_422_passes_replicates_detail_and_a_code_from_its_title(self) -> None:
        body = {
            "title": "Input validation failed",
            "detail": "- input.duration: duration must be one of the following: 5, 10\n",
            "status": 422,
            "invalid_fields": [{"type": "enum", "field": "input.duration", "description": "…"}],
        }
        adapter, _ = adapter_with(answer(body, 422))
        with pytest.raises(UpstreamRejected) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert (caught.value.status_code, caught.value.code) == (422, "input_validation_failed")
        assert "input.duration" in caught.value.message

    async def test_a_5xx_after_the_create_was_sent_is_not_repeated(self) -> None:
        adapter, seen = adapter_with(lambda _r: httpx.Response(503, text="<html>down</html>"))
        with pytest.raises(UpstreamError) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.headers.get("x-should-retry") == "false"
        assert len(seen) == 1


class TestRetrieve:
    @pytest.mark.parametrize(("status", "mapped"), [("starting", "queued"), ("processing", "in_progress")])
    async def test_running_statuses_report_no_progress_figure(self, status: str, mapped: str) -> None:
        adapter, seen = adapter_with(answer(prediction(status)))
        video = await adapter.retrieve_video(PID)
        await adapter.aclose()
        assert seen[0].url.path == f"/v1/predictions/{PID}"
        assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert (video.status, video.progress) == (mapped, None)
        # What the input asked for is read back (the reconciler matches cut-off creates on it).
        assert (video.prompt, video.seconds, video.size) == ("a fox", "8", "1920x1080")

    @pytest.mark.parametrize("output", [FILE_URL, [FILE_URL]])
    async def test_succeeded_with_a_video_is_completed_and_expires_an_hour_after_it_ended(self, output: object) -> None:
        adapter, _ = adapter_with(answer(prediction("succeeded", output=output, completed_at=COMPLETED)))
        video = await adapter.retrieve_video(PID)
        await adapter.aclose()
        assert (video.status, video.progress, video.error) == ("completed", 100, None)
        assert (video.completed_at, video.expires_at) == (COMPLETED_TS, COMPLETED_TS + 3600)

    async def test_the_profiles_retention_overrides_the_hour(self) -> None:
        adapter, _ = adapter_with(
            answer(prediction("succeeded", output=FILE_URL, completed_at=COMPLETED)), retention_seconds=600
        )
        video = await adapter.retrieve_video(PID)
        await adapter.aclose()
        assert video.expires_at == COMPLETED_TS + 600

    @pytest.mark.parametrize("output", [None, "", [], {"video": 1}, "ftp://x/y.mp4"])
    async def test_succeeded_without_a_video_is_never_completed(self, output: object) -> None:
        adapter, _ = adapter_with(answer(prediction("succeeded", output=output, completed_at=COMPLETED)))
        video = await adapter.retrieve_video(PID)
        await adapter.aclose()
        assert video.status == "failed"
        assert video.error is not None and video.error.code == "upstream_no_output"

    async def test_succeeded_with_its_data_removed_is_completed_with_the_window_closed(self) -> None:
        removed = prediction("succeeded", output=None, input={}, data_removed=True, completed_at=COMPLETED)
        adapter, _ = adapter_with(answer(removed))
        video = await adapter.retrieve_video(PID)
        await adapter.aclose()
        assert video.status == "completed"
        assert video.expires_at is not None and video.expires_at <= time.time()

    @pytest.mark.parametrize(
        "error",
        [
            "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
            "NSFW content detected in the generated video.",
            "Prompt rejected by the safety checker",
        ],
    )
    async def test_a_safety_failure_is_moderation_blocked_with_replicates_reason(self, error: str) -> None:
        adapter, _ = adapter_with(answer(prediction("failed", error=error)))
        video = await adapter.retrieve_video(PID)
        await adapter.aclose()
        assert video.status == "failed"
        assert video.error is not None
        assert (video.error.code, video.error.message) == ("moderation_blocked", error)

    async def test_another_failure_keeps_replicates_error_text(self) -> None:
        adapter, _ = adapter_with(answer(prediction("failed", error="CUDA out of memory")))
        video = await adapter.retrieve_video(PID)
        await adapter.aclose()
        assert video.error is not None
        assert (video.error.code, video.error.message) == ("upstream_failed", "CUDA out of memory")

    async def test_canceled_is_failed_cancelled(self) -> None:
        adapter, _ = adapter_with(answer(prediction("canceled")))
        video = await adapter.retrieve_video(PID)
        await adapter.aclose()
        assert video.status == "failed"
        assert video.error is not None and video.error.code == "cancelled"

    @pytest.mark.parametrize(
        "handler",
        [
            answer(prediction("dreaming")),
            answer(prediction("succeeded", id="NOT-AN-ID")),
            answer(["a", "list"]),
            lambda _r: httpx.Response(200, text="<html>oops</html>"),
        ],
    )
    async def test_an_answer_that_makes_no_sense_is_a_502(
        self, handler: Callable[[httpx.Request], httpx.Response]
    ) -> None:
        adapter, _ = adapter_with(handler)
        with pytest.raises(UpstreamError) as caught:
            await adapter.retrieve_video(PID)
        await adapter.aclose()
        assert caught.value.status_code == 502
        assert caught.value.code == "upstream_bad_response"

    async def test_an_id_that_is_not_a_prediction_id_never_reaches_a_url(self) -> None:
        adapter, seen = adapter_with(answer(prediction()))
        with pytest.raises(ResourceNotFound):
            await adapter.retrieve_video("../account")
        await adapter.aclose()
        assert seen == []


class TestDelete:
    async def test_a_running_prediction_is_cancelled(self) -> None:
        adapter, seen = adapter_with(answer(prediction("processing")))
        await adapter.delete_video(PID)
        await adapter.aclose()
        assert [(r.method, r.url.path) for r in seen] == [
            ("GET", f"/v1/predictions/{PID}"),
            ("POST", f"/v1/predictions/{PID}/cancel"),
        ]

    @pytest.mark.parametrize("status", ["succeeded", "failed", "canceled"])
    async def test_a_finished_prediction_is_left_alone(self, status: str) -> None:
        adapter, seen = adapter_with(answer(prediction(status, output=FILE_URL)))
        await adapter.delete_video(PID)
        await adapter.aclose()
        assert [r.method for r in seen] == ["GET"]

    async def test_a_prediction_already_gone_is_not_an_error(self) -> None:
        adapter, _ = adapter_with(answer({"title": "Not found", "detail": "Not found.", "status": 404}, 404))
        await adapter.delete_video(PID)
        await adapter.aclose()


class TestContent:
    async def test_the_token_goes_to_the_api_and_never_to_the_file_host(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "api.replicate.test":
                return httpx.Response(200, json=prediction("succeeded", output=FILE_URL, completed_at=COMPLETED))
            return httpx.Response(200, content=b"mp4-bytes")

        adapter, seen = adapter_with(handler)
        async with adapter.stream_content(PID, variant="video") as response:
            body = await response.aread()
        await adapter.aclose()
        assert body == b"mp4-bytes"
        assert [r.url.host for r in seen] == ["api.replicate.test", "replicate.delivery"]
        assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert "authorization" not in seen[1].headers
        assert TOKEN not in str(seen[1].headers) and TOKEN not in str(seen[1].url)

    @pytest.mark.parametrize(
        ("url", "allowed"),
        [
            ("https://pbxt.replicate.delivery/a/output.mp4", True),
            ("https://cdn.example.test/a/output.mp4", True),  # in content_redirect_hosts
            ("https://api.replicate.test/files/a/output.mp4", True),
            ("https://evil.test/a/output.mp4", False),
            ("https://replicate.delivery.evil.test/a/output.mp4", False),
            ("https://notreplicate.delivery/a/output.mp4", False),
            ("http://replicate.delivery/a/output.mp4", False),  # http only in dev mode
        ],
    )
    async def test_files_are_fetched_only_from_allowed_hosts_over_https(self, url: str, allowed: bool) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == f"/v1/predictions/{PID}":
                return httpx.Response(200, json=prediction("succeeded", output=url))
            return httpx.Response(200, content=b"mp4")

        adapter, seen = adapter_with(handler, content_redirect_hosts=["cdn.example.test"])
        if allowed:
            async with adapter.stream_content(PID, variant="video") as response:
                assert await response.aread() == b"mp4"
            assert "authorization" not in seen[-1].headers
        else:
            with pytest.raises(UpstreamError) as caught:
                async with adapter.stream_content(PID, variant="video"):
                    pass
            assert caught.value.code == "redirect_not_allowed"
            assert len(seen) == 1  # nothing sent to the file
        await adapter.aclose()

    async def test_http_files_are_allowed_in_dev_mode(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == f"/v1/predictions/{PID}":
                return httpx.Response(
                    200, json=prediction("succeeded", output="http://api.replicate.test/files/a/o.mp4")
                )
            return httpx.Response(200, content=b"mp4")

        adapter, seen = adapter_with(handler, allow_http=True)
        async with adapter.stream_content(PID, variant="video") as response:
            assert await response.aread() == b"mp4"
        await adapter.aclose()
        assert "authorization" not in seen[1].headers  # the same host as the API, still no token

    async def test_a_redirect_from_the_file_host_goes_only_to_allowed_hosts(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "api.replicate.test":
                return httpx.Response(200, json=prediction("succeeded", output=FILE_URL))
            return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data"})

        adapter, seen = adapter_with(handler)
        with pytest.raises(UpstreamError) as caught:
            async with adapter.stream_content(PID, variant="video"):
                pass
        await adapter.aclose()
        assert caught.value.code == "redirect_not_allowed"
        assert [r.url.host for r in seen] == ["api.replicate.test", "replicate.delivery"]

    @pytest.mark.parametrize(
        "body",
        [
            prediction("processing"),
            prediction("failed", error="boom"),
            prediction("succeeded", output=FILE_URL, data_removed=True),
        ],
    )
    async def test_no_video_to_serve_is_a_404(self, body: dict[str, Any]) -> None:
        adapter, seen = adapter_with(answer(body))
        with pytest.raises(ResourceNotFound):
            async with adapter.stream_content(PID, variant="video"):
                pass
        await adapter.aclose()
        assert len(seen) == 1

    async def test_image_variants_are_not_asked_of_replicate(self) -> None:
        adapter, seen = adapter_with(answer(prediction("succeeded", output=FILE_URL)))
        with pytest.raises(ResourceNotFound) as caught:
            async with adapter.stream_content(PID, variant="spritesheet"):
                pass
        await adapter.aclose()
        assert caught.value.code == "variant_not_ready"
        assert seen == []


def listed(pid: str, created: int, **fields: object) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return prediction(
        "succeeded",
        id=pid,
        created_at=stamp,
        output=FILE_URL,
        input={"prompt": f"prompt {pid}", "duration": 6, "aspect_ratio": "16:9", "resolution": "720p"},
        **fields,
    )


class TestRecentVideos:
    async def test_pages_follow_the_cursor_newest_first_and_stop_past_the_window(self) -> None:
        since = 1_800_000_000
        pages = {
            None: {
                "next": "https://evil.test/v1/predictions?cursor=page2",  # only the cursor is taken, not the host
                "results": [listed("aaa1", since + 50), listed("aaa2", since + 40)],
            },
            "page2": {
                "next": "https://api.replicate.test/v1/predictions?cursor=page3",
                "results": [listed("aaa3", since + 10), listed("aaa4", since - 10)],
            },
            "page3": {"next": None, "results": [listed("aaa5", since - 20)]},
        }

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=pages[request.url.params.get("cursor")])

        adapter, seen = adapter_with(handler)
        found = await adapter.recent_videos(created_since=since)
        await adapter.aclose()
        assert found is not None
        assert [video.id for video in found] == ["aaa1", "aaa2", "aaa3"]
        assert [(r.url.host, r.url.params.get("cursor")) for r in seen] == [
            ("api.replicate.test", None),
            ("api.replicate.test", "page2"),
        ]
        first = found[0]
        assert (first.model, first.prompt, first.seconds, first.size) == (
            "google/veo-3",
            "prompt aaa1",
            "6",
            "1280x720",
        )
        assert first.created_at == since + 50 and first.status == "completed"

    async def test_paging_is_bounded(self) -> None:
        now = int(time.time())

        def handler(request: httpx.Request) -> httpx.Response:
            page = {"next": "https://api.replicate.test/v1/predictions?cursor=more", "results": [listed("bbb1", now)]}
            return httpx.Response(200, json=page)

        adapter, seen = adapter_with(handler)
        found = await adapter.recent_videos(created_since=now - 60)
        await adapter.aclose()
        assert len(seen) == RECENT_PAGES
        assert found is not None and len(found) == RECENT_PAGES

    async def test_malformed_entries_are_skipped_and_a_malformed_page_is_a_502(self) -> None:
        now = int(time.time())
        good = listed("ccc1", now)
        page = {
            "next": None,
            "results": [
                "nonsense",
                {**good, "id": "BAD ID"},
                {**good, "id": "ccc2", "created_at": "yesterday"},
                {**good, "id": "ccc3", "status": "dreaming"},
                good,
            ],
        }
        adapter, _ = adapter_with(answer(page))
        found = await adapter.recent_videos(created_since=now - 60)
        assert found is not None and [video.id for video in found] == ["ccc1"]
        await adapter.aclose()
        broken, _ = adapter_with(answer({"results": "no"}))
        with pytest.raises(UpstreamError):
            await broken.recent_videos(created_since=now)
        await broken.aclose()


# ----- against the simulator, in process --------------------------------------------------------------

SIM_KEY = "sim-replicate-key"


@pytest.fixture
async def simulated() -> AsyncIterator[tuple[ReplicateAdapter, httpx.AsyncClient]]:
    app = create_replicate_simulator_app(
        SimulatorSettings(api_key=SIM_KEY, queue_seconds=0.05, render_seconds=0.2, fps=2)
    )
    transport = httpx.ASGITransport(app=app)
    settings = UpstreamSettings(
        kind="replicate",
        base_url="http://replicate.test",
        api_key=SIM_KEY,
        create_attempts=1,
        retry_base_seconds=0,
        retry_max_seconds=0,
    )
    adapter = ReplicateAdapter(settings, profile="rep", transport=transport, allow_http_redirects=True)
    admin = httpx.AsyncClient(
        transport=transport, base_url="http://replicate.test", headers={"authorization": f"Bearer {SIM_KEY}"}
    )
    async with replicate_simulator_running(app), admin:
        yield adapter, admin
    await adapter.aclose()


async def settle(adapter: ReplicateAdapter, upstream_id: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        video = await adapter.retrieve_video(upstream_id)
        if video.status in ("completed", "failed"):
            return video
        assert time.monotonic() < deadline, video
        await asyncio.sleep(0.05)


class TestAgainstTheSimulator:
    async def test_a_render_round_trip_and_its_file_fetched_without_the_token(
        self, simulated: tuple[ReplicateAdapter, httpx.AsyncClient]
    ) -> None:
        adapter, admin = simulated
        created = await adapter.create_video(command(seconds="4"))
        assert created.status in ("queued", "in_progress")
        video = await settle(adapter, created.id)
        assert (video.status, video.seconds, video.size, video.prompt) == ("completed", "4", "1280x720", "a fox")
        assert video.expires_at is not None and video.completed_at is not None
        assert video.expires_at - video.completed_at == 3600
        async with adapter.stream_content(created.id, variant="video") as response:
            body = await response.aread()
        assert body[4:8] == b"ftyp"
        requests = (await admin.get("/_sim/stats")).json()["requests"]
        assert requests["serve_file"] == 1
        assert "serve_file_with_authorization" not in requests
        assert "create_prediction_prefer_wait" not in requests

    @pytest.mark.parametrize(
        ("model", "seconds", "size", "image"),
        [
            ("google/veo-3.1-fast", "8", "1080x1920", None),
            ("kwaivgi/kling-v2.1", "10", "720x1280", png(720, 1280)),
            ("kwaivgi/kling-v2.1-master", "5", "1080x1080", None),
            ("minimax/hailuo-02", "6", "1920x1080", png(1920, 1080)),
            ("bytedance/seedance-1-lite", "5", "960x960", None),
            ("wan-video/wan-2.2-t2v-fast", "5", "1280x720", None),
        ],
    )
    async def test_every_family_is_accepted_by_replicates_schemas(
        self,
        simulated: tuple[ReplicateAdapter, httpx.AsyncClient],
        model: str,
        seconds: str,
        size: str,
        image: ImageInput | None,
    ) -> None:
        adapter, admin = simulated
        await admin.patch("/_sim/config", json={"queue_seconds": 600})  # accepted, never rendered
        request = command(model=model, seconds=seconds, size=size, image=image)
        adapter.check_create(request)
        created = await adapter.create_video(request)
        assert created.status == "queued"
        again = await adapter.retrieve_video(created.id)
        assert (again.model, again.seconds) == (model, seconds)

    async def test_a_blocked_prompt_ends_moderation_blocked_with_replicates_text(
        self, simulated: tuple[ReplicateAdapter, httpx.AsyncClient]
    ) -> None:
        adapter, _ = simulated
        created = await adapter.create_video(command(prompt="something forbidden", seconds="4"))
        video = await settle(adapter, created.id)
        assert video.status == "failed"
        assert video.error.code == "moderation_blocked"
        assert "(E005)" in video.error.message

    async def test_deleting_a_running_render_cancels_it_upstream(
        self, simulated: tuple[ReplicateAdapter, httpx.AsyncClient]
    ) -> None:
        adapter, admin = simulated
        await admin.patch("/_sim/config", json={"queue_seconds": 600})
        created = await adapter.create_video(command(seconds="4"))
        await adapter.delete_video(created.id)
        video = await adapter.retrieve_video(created.id)
        assert (video.status, video.error.code if video.error else None) == ("failed", "cancelled")
        assert (await admin.get("/_sim/stats")).json()["requests"]["cancel_prediction"] == 1

    async def test_recent_videos_pages_through_the_simulators_cursor(
        self, simulated: tuple[ReplicateAdapter, httpx.AsyncClient]
    ) -> None:
        adapter, admin = simulated
        await admin.patch("/_sim/config", json={"queue_seconds": 600, "list_page_size": 2})
        ids = [(await adapter.create_video(command(prompt=f"p{n}", seconds="4"))).id for n in range(5)]
        found = await adapter.recent_videos(created_since=int(time.time()) - 60)
        assert found is not None
        assert [video.id for video in found] == list(reversed(ids))
        assert [video.prompt for video in found] == [f"p{n}" for n in reversed(range(5))]
        assert (await admin.get("/_sim/stats")).json()["requests"]["list_predictions"] == 3

    async def test_the_simulators_throttling_is_a_429_with_its_retry_after(
        self, simulated: tuple[ReplicateAdapter, httpx.AsyncClient]
    ) -> None:
        adapter, admin = simulated
        await admin.patch("/_sim/faults", json={"rate_limit_next": 1, "rate_limit_retry_after_seconds": 30})
        with pytest.raises(RateLimited) as caught:
            await adapter.create_video(command(seconds="4"))
        assert caught.value.headers["retry-after"] == "30"
        assert "throttled" in caught.value.message
        assert (await admin.get("/_sim/stats")).json()["predictions_created"] == 0
