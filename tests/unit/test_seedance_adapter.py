"""The Seedance adapter's mapping, against scripted ModelArk answers (no network): what it sends, what it refuses
before sending, how every task status becomes OpenAI's video object, delete's three cases, the list, and the
video download that never carries the key. The simulator-driven profile test covers the same path against a
fake written from Ark's contract."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.core.config import UpstreamSettings
from app.core.errors import InvalidRequest, RateLimited, ResourceNotFound, UpstreamError
from app.upstream.client import UpstreamRejected
from app.upstream.reference import PARAM, SubmissionReferences
from app.upstream.schemas import CreateVideoCommand, ImageInput
from app.upstream.seedance import SeedanceAdapter, snake_code

TASK = "cgt-20261129101500-a1b2c"
PRO = "seedance-1-0-pro-250528"
V2 = "dreamina-seedance-2-0-260128"
TASK_PATH = f"/api/v3/contents/generations/tasks/{TASK}"
# A TOS presigned URL: its query must arrive exactly as written.
VIDEO_URL = (
    "https://ark-content-generation-ap-southeast-1.tos-ap-southeast-1.volces.com/out/v.mp4"
    "?X-Tos-Algorithm=TOS4-HMAC-SHA256&X-Tos-Credential=AKLT%2F20261129%2Fap-southeast-1%2Ftos%2Frequest"
    "&X-Tos-Expires=86400&X-Tos-Signature=abc123"
)


def adapter_with(
    handler: Callable[[httpx.Request], httpx.Response], *, allow_http: bool = False, **overrides: object
) -> tuple[SeedanceAdapter, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = UpstreamSettings(
        kind="seedance",
        base_url="https://ark.test/api/v3",
        api_key="ark-secret",
        retry_base_seconds=0,
        retry_max_seconds=0,
        **overrides,
    )
    adapter = SeedanceAdapter(
        settings, profile="seedance", transport=httpx.MockTransport(record), allow_http_redirects=allow_http
    )
    adapter.list_page_interval_seconds = 0
    return adapter, seen


def command(**changes: object) -> CreateVideoCommand:
    fields: dict[str, object] = {"prompt": "a fox", "model": PRO, "seconds": "5", "size": "1248x704"}
    fields.update(changes)
    return CreateVideoCommand(**fields)  # type: ignore[arg-type]


def image(width: int = 640, height: int = 480) -> ImageInput:
    return ImageInput(data=b"\x89PNGfake", content_type="image/png", filename="a.png", width=width, height=height)


def task(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": TASK,
        "model": PRO,
        "status": status,
        "created_at": 1_790_000_000,
        "updated_at": 1_790_000_100,
        "ratio": "16:9",
        "resolution": "720p",
        "duration": 5,
        **fields,
    }


def answers(body: dict[str, Any], status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, json=body)


def ark_error(code: str, message: str, **extra: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class TestCreate:
    async def test_create_sends_arks_body_with_the_bearer_key_and_our_callback(self) -> None:
        adapter, seen = adapter_with(answers({"id": TASK}), webhook_url="https://gw.test/webhooks/seedance")
        video = await adapter.create_video(command(image=image()))
        await adapter.aclose()
        [request] = seen
        assert (request.method, request.url.path) == ("POST", "/api/v3/contents/generations/tasks")
        assert request.headers["authorization"] == "Bearer ark-secret"
        body = json.loads(request.content)
        assert body == {
            "model": PRO,
            "content": [
                {"type": "text", "text": "a fox"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"\x89PNGfake").decode()},
                    "role": "first_frame",
                },
            ],
            "ratio": "16:9",
            "resolution": "720p",
            "duration": 5,
            "callback_url": "https://gw.test/webhooks/seedance",
        }
        assert (video.id, video.status, video.progress) == (TASK, "queued", 0)
        assert (video.size, video.seconds, video.prompt) == ("1248x704", "5", "a fox")

    async def test_without_a_webhook_url_no_callback_is_asked_for(self) -> None:
        adapter, seen = adapter_with(answers({"id": TASK}))
        await adapter.create_video(command())
        await adapter.aclose()
        assert "callback_url" not in json.loads(seen[0].content)

    async def test_the_callback_url_carries_our_video_id_under_a_tag_only_this_profile_makes(self) -> None:
        adapter, seen = adapter_with(answers({"id": TASK}), webhook_url="https://gw.test/webhooks/seedance")
        await adapter.create_video(command(reference="video_abc123"))
        await adapter.aclose()
        url = httpx.URL(json.loads(seen[0].content)["callback_url"])
        assert (url.host, url.path) == ("gw.test", "/webhooks/seedance")
        assert SubmissionReferences(SecretStr("ark-secret")).video_id_of(url.params[PARAM]) == "video_abc123"
        assert SubmissionReferences(SecretStr("another-key")).video_id_of(url.params[PARAM]) is None

    @pytest.mark.parametrize(
        ("model", "size", "expected"),
        [
            (PRO, "704x1248", ("9:16", "720p")),
            (PRO, "2176x928", ("21:9", "1080p")),
            ("seedance-1-5-pro-251215", "1440x1440", ("1:1", "1080p")),
            (V2, "1280x720", ("16:9", "720p")),
            (V2, "496x864", ("9:16", "480p")),
            (V2, "3840x2160", ("16:9", "4k")),
            ("doubao-seedance-1-0-pro-250528", "1120x832", ("4:3", "720p")),  # Volcengine's id for the same model
        ],
    )
    async def test_each_size_names_the_ratio_and_resolution_that_render_it(
        self, model: str, size: str, expected: tuple[str, str]
    ) -> None:
        adapter, seen = adapter_with(answers({"id": TASK}))
        adapter.check_create(command(model=model, size=size))
        await adapter.create_video(command(model=model, size=size))
        await adapter.aclose()
        body = json.loads(seen[0].content)
        assert (body["ratio"], body["resolution"]) == expected

    @pytest.mark.parametrize(
        ("changes", "param", "listed"),
        [
            ({"seconds": "1"}, "seconds", "'2', '3', '4'"),
            ({"seconds": "13"}, "seconds", "'12'"),
            ({"model": "seedance-1-5-pro-251215", "size": "1280x720", "seconds": "3"}, "seconds", "'4', '5'"),
            ({"model": V2, "size": "1280x720", "seconds": "16"}, "seconds", "'15'"),
            ({"size": "1280x720"}, "size", "'1248x704'"),
            ({"model": "dreamina-seedance-2-0-fast-260128", "size": "1920x1080"}, "size", "'1280x720'"),
            ({"model": "kling-v2"}, "model", "seedance-1-0-pro"),
            ({"model": "seedance-1-0-lite-t2v-250428", "image": image()}, "input_reference", "text only"),
            ({"model": "seedance-1-0-lite-i2v-250428"}, "input_reference", "required"),
            ({"image": image(200, 200)}, "input_reference", "300 to 6000"),
            ({"image": image(3000, 1000)}, "input_reference", "between 0.4 and 2.5"),
        ],
    )
    def test_what_the_model_cannot_render_is_a_400_naming_the_param(
        self, changes: dict[str, object], param: str, listed: str
    ) -> None:
        adapter, seen = adapter_with(answers({}, 500))
        with pytest.raises(InvalidRequest) as caught:
            adapter.check_create(command(**changes))
        assert caught.value.param == param
        assert listed in caught.value.message
        assert seen == []

    def test_an_image_link_is_taken_since_the_gateway_sends_its_bytes(self) -> None:
        adapter, _ = adapter_with(answers({}, 500))
        adapter.check_create(command(image_url="https://img.test/a.png"))
        adapter.check_create(command(model="seedance-1-0-lite-i2v-250428", image_url="https://img.test/a.png"))

    def test_remix_is_refused_saying_what_the_model_can_do(self) -> None:
        adapter, _ = adapter_with(answers({}, 500))
        with pytest.raises(InvalidRequest) as caught:
            adapter.check_remix(PRO)
        assert caught.value.code == "unsupported_by_provider"
        assert "remix" not in caught.value.message.split("supports:")[1]

    @pytest.mark.parametrize(
        "answer",
        [httpx.Response(200, json={"id": "../../etc"}), httpx.Response(200, json={}), httpx.Response(200, text="ok")],
    )
    async def test_a_create_answer_without_a_usable_task_id_is_never_retried(self, answer: httpx.Response) -> None:
        adapter, seen = adapter_with(lambda _r: answer)
        with pytest.raises(UpstreamError) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.headers.get("x-should-retry") == "false"
        assert len(seen) == 1

    async def test_a_429_is_retried_then_answered_in_our_words_with_retry_after(self) -> None:
        body = ark_error("RateLimitExceeded.EndpointRPMExceeded", "Endpoint ep-123 of account 2100 exceeded RPM.")
        adapter, seen = adapter_with(
            lambda _r: httpx.Response(429, json=body, headers={"retry-after": "7"}), create_attempts=2
        )
        with pytest.raises(RateLimited) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert len(seen) == 2  # a 429 proves nothing was created: retried within the attempts
        assert caught.value.headers["retry-after"] == "7"
        assert "RateLimitExceeded.EndpointRPMExceeded" in caught.value.message
        assert "2100" not in caught.value.message and "ep-123" not in caught.value.message

    async def test_a_5xx_after_a_create_is_never_repeated_and_says_so_in_our_words(self) -> None:
        adapter, seen = adapter_with(answers(ark_error("InternalServiceError", "node 10.0.0.7 crashed"), 500))
        with pytest.raises(UpstreamError) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert len(seen) == 1
        assert caught.value.headers.get("x-should-retry") == "false"
        assert "10.0.0.7" not in caught.value.message

    async def test_a_400_from_ark_passes_its_message_with_our_param_name(self) -> None:
        body = ark_error(
            "InvalidParameter", "The parameter `duration` specified in the request is not valid", param="duration"
        )
        adapter, _ = adapter_with(answers(body, 400))
        with pytest.raises(UpstreamRejected) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.message.startswith("The parameter `duration`")
        assert (caught.value.param, caught.value.code) == ("seconds", "invalid_parameter")

    async def test_a_prompt_refused_as_sensitive_is_moderation_blocked(self) -> None:
        body = ark_error("InputTextSensitiveContentDetected", "The input text may contain sensitive information.")
        adapter, _ = adapter_with(answers(body, 400))
        with pytest.raises(UpstreamRejected) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert caught.value.code == "moderation_blocked"

    async def test_a_model_the_account_has_not_activated_is_the_operators_problem(self) -> None:
        body = ark_error("ModelNotOpen", "Your account 2100123 has not activated the model.")
        adapter, seen = adapter_with(answers(body, 404))
        with pytest.raises(UpstreamError) as caught:
            await adapter.create_video(command())
        await adapter.aclose()
        assert (caught.value.status_code, caught.value.code) == (502, "upstream_model_unavailable")
        assert "2100123" not in caught.value.message
        assert "x-should-retry" not in caught.value.headers  # nothing was started
        assert len(seen) == 1


class TestRetrieve:
    async def test_queued_and_running_map_with_size_and_seconds_read_back(self) -> None:
        for status, expected in (("queued", ("queued", 0)), ("running", ("in_progress", None))):
            adapter, seen = adapter_with(answers(task(status)))
            video = await adapter.retrieve_video(TASK)
            await adapter.aclose()
            assert seen[0].url.path == TASK_PATH
            assert (video.status, video.progress) == expected
            assert (video.size, video.seconds, video.created_at) == ("1248x704", "5", 1_790_000_000)

    async def test_succeeded_with_a_video_is_completed_and_expires_a_day_after_completion(self) -> None:
        adapter, _ = adapter_with(answers(task("succeeded", content={"video_url": VIDEO_URL})))
        video = await adapter.retrieve_video(TASK)
        await adapter.aclose()
        assert (video.status, video.progress, video.completed_at) == ("completed", 100, 1_790_000_100)
        assert video.expires_at == 1_790_000_100 + 24 * 3600

    async def test_the_profiles_retention_overrides_the_day(self) -> None:
        adapter, _ = adapter_with(answers(task("succeeded", content={"video_url": VIDEO_URL})), retention_seconds=600)
        video = await adapter.retrieve_video(TASK)
        await adapter.aclose()
        assert video.expires_at == 1_790_000_100 + 600

    async def test_succeeded_without_any_video_is_never_completed(self) -> None:
        adapter, _ = adapter_with(answers(task("succeeded", content={})))
        video = await adapter.retrieve_video(TASK)
        await adapter.aclose()
        assert video.status == "failed"
        assert video.error is not None and video.error.code == "upstream_no_output"

    @pytest.mark.parametrize(
        ("error", "expected_code"),
        [
            (
                {"code": "OutputVideoSensitiveContentDetected", "message": "may contain sensitive info"},
                "moderation_blocked",
            ),
            (
                {"code": "InputImageSensitiveContentDetected.PrivacyInformation", "message": "real face"},
                "moderation_blocked",
            ),
            ({"code": "InternalServiceError", "message": "may contain sensitive info"}, "internal_service_error"),
        ],
    )
    async def test_failed_carries_arks_reason_and_moderation_becomes_moderation_blocked(
        self, error: dict[str, str], expected_code: str
    ) -> None:
        adapter, _ = adapter_with(answers(task("failed", error=error)))
        video = await adapter.retrieve_video(TASK)
        await adapter.aclose()
        assert video.status == "failed"
        assert video.error is not None
        assert (video.error.code, video.error.message) == (expected_code, error["message"])

    @pytest.mark.parametrize("status", ["cancelled", "expired"])
    async def test_cancelled_and_expired_are_failed_with_that_code(self, status: str) -> None:
        adapter, _ = adapter_with(answers(task(status)))
        video = await adapter.retrieve_video(TASK)
        await adapter.aclose()
        assert video.status == "failed"
        assert video.error is not None and video.error.code == status

    @pytest.mark.parametrize("body", [task("rendering"), {"nope": 1}, task(None)])  # type: ignore[arg-type]
    async def test_a_status_we_cannot_read_is_a_502_never_a_500(self, body: dict[str, Any]) -> None:
        adapter, _ = adapter_with(answers(body))
        with pytest.raises(UpstreamError) as caught:
            await adapter.retrieve_video(TASK)
        await adapter.aclose()
        assert (caught.value.status_code, caught.value.code) == (502, "upstream_bad_response")

    async def test_fields_we_cannot_read_are_left_to_what_the_gateway_knows(self) -> None:
        odd = task("queued", created_at="soon", model=7, ratio="2:1", duration=True)
        adapter, _ = adapter_with(answers(odd))
        video = await adapter.retrieve_video(TASK)
        await adapter.aclose()
        assert (video.id, video.status, video.model, video.size, video.seconds) == (TASK, "queued", "", "", "")
        assert video.created_at > 1_790_000_000  # dated now

    async def test_an_id_that_is_not_a_task_id_never_reaches_a_url(self) -> None:
        adapter, seen = adapter_with(answers(task("queued")))
        with pytest.raises(ResourceNotFound):
            await adapter.retrieve_video("../files/x")
        await adapter.aclose()
        assert seen == []


class TestDelete:
    @pytest.mark.parametrize("status", ["queued", "succeeded", "failed"])
    async def test_a_queued_or_finished_task_is_deleted_upstream(self, status: str) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=task(status) if request.method == "GET" else {})

        adapter, seen = adapter_with(handler)
        await adapter.delete_video(TASK)
        await adapter.aclose()
        assert [(request.method, request.url.path) for request in seen] == [("GET", TASK_PATH), ("DELETE", TASK_PATH)]

    async def test_a_running_task_is_left_alone_upstream(self) -> None:
        adapter, seen = adapter_with(answers(task("running")))
        await adapter.delete_video(TASK)
        await adapter.aclose()
        assert [request.method for request in seen] == ["GET"]

    async def test_a_task_that_started_between_the_read_and_the_delete_is_left_alone(self) -> None:
        statuses = iter(["queued", "running"])

        def handler(request: httpx.Request) -> httpx.Response:
            if request.method == "DELETE":
                return httpx.Response(400, json=ark_error("OperationDenied.InvalidState", "running"))
            return httpx.Response(200, json=task(next(statuses)))

        adapter, seen = adapter_with(handler)
        await adapter.delete_video(TASK)
        await adapter.aclose()
        assert [request.method for request in seen] == ["GET", "DELETE", "GET"]

    async def test_a_task_upstream_no_longer_has_is_not_found(self) -> None:
        adapter, _ = adapter_with(answers(ark_error("ResourceNotFound", "not found"), 404))
        with pytest.raises(ResourceNotFound):
            await adapter.delete_video(TASK)
        await adapter.aclose()


class TestRecentVideos:
    @staticmethod
    def listed(index: int, created_at: int, status: str = "succeeded", **fields: Any) -> dict[str, Any]:
        fields.setdefault("content", {"video_url": VIDEO_URL})
        return task(status, id=f"cgt-20261129101500-{index:05d}", created_at=created_at, **fields)

    async def test_pages_newest_first_until_past_created_since(self) -> None:
        pages = {
            "1": [self.listed(n, 2000 - n) for n in range(100)],  # 2000 … 1901
            "2": [self.listed(100 + n, 1900 - n) for n in range(100)],  # 1900 … 1801
            "3": [self.listed(999, 1000)],
        }

        def handler(request: httpx.Request) -> httpx.Response:
            assert request.url.params["page_size"] == "100"
            return httpx.Response(200, json={"items": pages[request.url.params["page_num"]], "total": 201})

        adapter, seen = adapter_with(handler)
        found = await adapter.recent_videos(created_since=1850)
        await adapter.aclose()
        assert found is not None
        assert [request.url.params["page_num"] for request in seen] == ["1", "2"]  # page 2 reached back past 1850
        assert [video.created_at for video in found] == list(range(2000, 1849, -1))
        assert all(video.status == "completed" and video.size == "1248x704" for video in found)

    async def test_the_prompt_is_read_from_listed_content_only_when_ark_lists_it(self) -> None:
        items = [
            self.listed(1, 2000, content=[{"type": "text", "text": "a fox"}, {"type": "image_url"}]),
            self.listed(2, 1999, content={"video_url": VIDEO_URL}),
            {"id": "../bad", "status": "queued"},
            self.listed(3, 1998, status="sparkling"),
        ]
        adapter, _ = adapter_with(answers({"items": items, "total": 4}))
        found = await adapter.recent_videos(created_since=0)
        await adapter.aclose()
        assert found is not None
        assert [(video.id[-5:], video.prompt) for video in found] == [("00001", "a fox"), ("00002", None)]

    async def test_the_number_of_pages_is_bounded(self) -> None:
        adapter, seen = adapter_with(
            lambda r: httpx.Response(200, json={"items": [self.listed(1, 2000)] * 100, "total": 10**6})
        )
        await adapter.recent_videos(created_since=0)
        await adapter.aclose()
        assert len(seen) == 5


class TestContent:
    async def test_the_video_is_fetched_without_the_key_and_with_its_query_byte_for_byte(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "ark.test":
                return httpx.Response(200, json=task("succeeded", content={"video_url": VIDEO_URL}))
            return httpx.Response(200, content=b"mp4-bytes")

        adapter, seen = adapter_with(handler)
        async with adapter.stream_content(TASK, variant="video") as response:
            body = await response.aread()
        await adapter.aclose()
        assert body == b"mp4-bytes"
        assert seen[0].headers["authorization"] == "Bearer ark-secret"
        download = seen[1]
        assert "authorization" not in download.headers
        assert str(download.url) == VIDEO_URL
        assert download.url.raw_path.decode().split("?", 1)[1] == VIDEO_URL.split("?", 1)[1]

    @pytest.mark.parametrize(
        ("url", "allow_http", "hosts"),
        [
            ("https://evil.test/v.mp4?sig=1", False, []),
            ("https://volces.com.evil.test/v.mp4", False, []),
            ("http://bucket.tos-cn-beijing.volces.com/v.mp4", False, []),
            ("http://files.test/v.mp4", False, ["files.test"]),
        ],
    )
    async def test_a_video_anywhere_else_is_not_fetched(self, url: str, allow_http: bool, hosts: list[str]) -> None:
        adapter, seen = adapter_with(
            answers(task("succeeded", content={"video_url": url})), allow_http=allow_http, content_redirect_hosts=hosts
        )
        with pytest.raises(UpstreamError) as caught:
            async with adapter.stream_content(TASK, variant="video"):
                pass
        await adapter.aclose()
        assert caught.value.code == "redirect_not_allowed"
        assert [request.url.host for request in seen] == ["ark.test"]

    async def test_a_configured_host_is_fetched_over_http_in_dev_mode(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "ark.test":
                return httpx.Response(200, json=task("succeeded", content={"video_url": "http://files.test/v.mp4"}))
            return httpx.Response(200, content=b"mp4")

        adapter, seen = adapter_with(handler, allow_http=True, content_redirect_hosts=["files.test"])
        async with adapter.stream_content(TASK, variant="video") as response:
            assert await response.aread() == b"mp4"
        await adapter.aclose()
        assert "authorization" not in seen[1].headers

    async def test_an_expired_link_is_gone_not_a_credentials_problem(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "ark.test":
                return httpx.Response(200, json=task("succeeded", content={"video_url": VIDEO_URL}))
            return httpx.Response(403, content=b"<Error><Code>AccessDenied</Code></Error>")

        adapter, _ = adapter_with(handler)
        with pytest.raises(ResourceNotFound) as caught:
            async with adapter.stream_content(TASK, variant="video"):
                pass
        await adapter.aclose()
        assert caught.value.code == "upstream_content_expired"

    async def test_a_task_without_a_video_has_no_content(self) -> None:
        adapter, seen = adapter_with(answers(task("running")))
        with pytest.raises(ResourceNotFound):
            async with adapter.stream_content(TASK, variant="video"):
                pass
        await adapter.aclose()
        assert len(seen) == 1

    async def test_image_variants_are_not_served_upstream(self) -> None:
        adapter, seen = adapter_with(answers(task("succeeded", content={"video_url": VIDEO_URL})))
        with pytest.raises(ResourceNotFound) as caught:
            async with adapter.stream_content(TASK, variant="thumbnail"):
                pass
        await adapter.aclose()
        assert caught.value.code == "variant_not_ready"
        assert seen == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("InvalidParameter", "invalid_parameter"),
        ("RateLimitExceeded.EndpointRPMExceeded", "rate_limit_exceeded_endpoint_rpm_exceeded"),
        ("ModelNotOpen", "model_not_open"),
        ("...", "upstream_error"),
    ],
)
def test_arks_codes_become_snake_case(code: str, expected: str) -> None:
    assert snake_code(code) == expected
