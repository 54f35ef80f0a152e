"""The Seedance (ModelArk) simulator in process over ASGITransport: the task lifecycle and its endings, the
presigned file host, create validation, cancel/delete, list paging, unsigned callbacks, and the fault knobs.
Callbacks are delivered through an in-process transport, so nothing here opens a socket."""

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

from app.core.config import SimulatorSettings
from app.simulator.seedance import create_seedance_simulator_app, seedance_simulator_running
from tests.support.videos import image_of

API_KEY = "ark-test-key"
KEY = {"authorization": f"Bearer {API_KEY}"}
BASE_URL = "http://ark.test"
TASKS = "/api/v3/contents/generations/tasks"
PRO = "seedance-1-0-pro-250528"
FPS = 2
CALLBACK_URL = "http://gateway.test/webhooks/seedance"


class Callbacks:
    """Records what the simulator POSTs to callback URLs; answers each with the next queued status (else 200)."""

    def __init__(self) -> None:
        self.received: list[httpx.Request] = []
        self.statuses: list[int] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.received]

    async def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"expected {count} callbacks, got {self.bodies()}"
            await asyncio.sleep(0.02)
        return self.bodies()


def settings(**overrides: Any) -> SimulatorSettings:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "queue_seconds": 0,
        "render_seconds": 0.2,
        "fps": FPS,
        "webhook_retry_base_seconds": 0.05,
        "webhook_max_attempts": 3,
        **overrides,
    }
    return SimulatorSettings(**values)


@contextlib.asynccontextmanager
async def seedance_sim(
    callbacks: Callbacks | None = None, files_base_url: str | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator in process; the client sends no key by itself (tests choose what to send)."""
    app = create_seedance_simulator_app(
        settings(**overrides),
        files_base_url=files_base_url,
        callback_transport=httpx.MockTransport(callbacks or Callbacks()),
    )
    async with (
        seedance_simulator_running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        yield client


def body(prompt: str | None = "A calico cat playing a piano", **fields: Any) -> dict[str, Any]:
    content: list[dict[str, Any]] = [] if prompt is None else [{"type": "text", "text": prompt}]
    return {"model": PRO, "content": content, "duration": 2, "ratio": "16:9", "resolution": "480p", **fields}


def png(size: tuple[int, int], colour: tuple[int, int, int] = (20, 180, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def image_item(data: bytes, role: str = "first_frame", mime: str = "png") -> dict[str, Any]:
    url = f"data:image/{mime};base64,{base64.b64encode(data).decode()}"
    return {"type": "image_url", "image_url": {"url": url}, "role": role}


async def create(client: httpx.AsyncClient, payload: dict[str, Any] | None = None) -> str:
    response = await client.post(TASKS, json=payload or body(), headers=KEY)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["id"]
    return task_id


async def get(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"{TASKS}/{task_id}", headers=KEY)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def wait_done(client: httpx.AsyncClient, task_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = await get(client, task_id)
        if task["status"] not in ("queued", "running"):
            return task
        assert time.monotonic() < deadline, f"task {task_id} never finished"
        await asyncio.sleep(0.05)


def assert_ark_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message"}
    assert payload["error"]["code"] == code
    message: str = payload["error"]["message"]
    assert message
    return message


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get("/_sim/stats", headers=KEY)).json()
    return result


def mp4_facts(data: bytes) -> tuple[int, int, float]:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert container.duration is not None
        return stream.codec_context.width, stream.codec_context.height, container.duration / 1_000_000


class TestLifecycle:
    async def test_a_task_is_queued_runs_and_succeeds_with_a_real_mp4_of_the_documented_size(self) -> None:
        async with seedance_sim(queue_seconds=0.2, render_seconds=0.4) as client:
            task_id = await create(client, body(resolution="720p"))
            assert re.fullmatch(r"cgt-\d{14}-[a-z0-9]{5}", task_id)
            first = await get(client, task_id)
            assert (first["status"], first["model"]) == ("queued", PRO)
            assert "content" not in first and "error" not in first
            task = await wait_done(client, task_id)
            assert task["status"] == "succeeded"
            assert (task["ratio"], task["resolution"], task["duration"]) == ("16:9", "720p", 2)
            assert task["updated_at"] >= task["created_at"] and task["usage"]["total_tokens"] > 0
            url = task["content"]["video_url"]
            assert re.fullmatch(rf"{BASE_URL}/files/[0-9a-f]{{32}}\.mp4\?X-Tos-Algorithm=.+&X-Tos-Signature=\w+", url)
            mp4 = await client.get(url)  # no key: the signed query authorises the file
            assert mp4.status_code == 200
            assert mp4.headers["content-type"] == "video/mp4"
            assert int(mp4.headers["content-length"]) == len(mp4.content)
            width, height, seconds = mp4_facts(mp4.content)
            # Seedance 1.0's 720p 16:9 is 1248x704, not 1280x720.
            assert (width, height) == (1248, 704)
            assert seconds == pytest.approx(2.0, abs=0.6)
            counts = await stats(client)
            assert (counts["create_requests"], counts["tasks_created"], counts["renders_completed"]) == (1, 1, 1)
            assert counts["requests"]["download_file"] == 1

    async def test_the_newer_models_render_their_own_sizes_and_adaptive_follows_the_first_frame(self) -> None:
        payload = {
            "model": "seedance-1-5-pro-251215",
            "content": [{"type": "text", "text": "a heron"}, image_item(png((400, 720)))],
            "duration": 4,
            "resolution": "480p",
        }
        async with seedance_sim() as client:
            task = await wait_done(client, await create(client, payload))
            assert task["ratio"] == "9:16"  # `adaptive` by default with an image: the nearest ratio to 400x720
            mp4 = await client.get(task["content"]["video_url"])
            with av.open(io.BytesIO(mp4.content), mode="r") as container:
                stream = container.streams.video[0]
                assert (stream.codec_context.width, stream.codec_context.height) == (496, 864)
                first = image_of(next(container.decode(stream)))
            pixel = first.getpixel((480, 850))  # a corner the text and the ball leave alone
            assert isinstance(pixel, tuple)
            red, green, blue = pixel[:3]
            assert abs(red - 20) < 30 and abs(green - 180) < 30 and abs(blue - 60) < 30

    async def test_video_urls_point_at_the_configured_file_host(self) -> None:
        async with seedance_sim(files_base_url="http://tos.test") as client:
            url = (await wait_done(client, await create(client)))["content"]["video_url"]
            assert url.startswith("http://tos.test/files/")
            await client.patch("/_sim/config", json={"files_base_url": "https://other.test"}, headers=KEY)
            assert (await wait_done(client, await create(client)))["content"]["video_url"].startswith("https://other")

    async def test_a_reencoded_or_missing_signature_is_refused(self) -> None:
        async with seedance_sim() as client:
            url = (await wait_done(client, await create(client)))["content"]["video_url"]
            assert "%2F" in url
            # The last character changed to another one (appending a fixed "0" is no change when it ends in 0).
            tampered = url[:-1] + ("1" if url.endswith("0") else "0")
            for forged in (url.replace("%2F", "/"), url.split("?")[0], tampered):
                refused = await client.get(forged)
                assert refused.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in refused.content
            missing = await client.get("/files/" + "0" * 32 + ".mp4?x=1")
            assert missing.status_code == 404 and b"NoSuchKey" in missing.content

    async def test_the_url_stops_working_after_the_ttl_but_the_task_stays(self) -> None:
        async with seedance_sim(ttl_seconds=0.5) as client:
            task_id = await create(client)
            url = (await wait_done(client, task_id))["content"]["video_url"]
            assert "X-Tos-Expires=1&" in url
            assert (await client.get(url)).status_code == 200
            await asyncio.sleep(0.7)
            expired = await client.get(url)
            assert expired.status_code == 403 and b"<Code>AccessDenied</Code>" in expired.content
            assert (await get(client, task_id))["status"] == "succeeded"

    async def test_admin_expire_ends_a_url_now_and_an_unfinished_task_as_expired(self) -> None:
        async with seedance_sim(ttl_seconds=86400) as client:
            done = await create(client)
            url = (await wait_done(client, done))["content"]["video_url"]
            answer = await client.post(f"/_sim/tasks/{done}/expire", headers=KEY)
            assert answer.json() == {"id": done, "status": "succeeded"}
            assert (await client.get(url)).status_code == 403
            await client.patch("/_sim/config", json={"queue_seconds": 60}, headers=KEY)
            waiting = await create(client)
            assert (await client.post(f"/_sim/tasks/{waiting}/expire", headers=KEY)).json()["status"] == "expired"
            task = await get(client, waiting)
            assert task["status"] == "expired" and "content" not in task and "error" not in task


class TestEndings:
    async def test_a_blocked_word_fails_after_running_with_a_sensitive_content_code(self) -> None:
        async with seedance_sim(render_seconds=0.3) as client:
            task_id = await create(client, body("something FORBIDDEN here"))
            seen = set()
            while (task := await get(client, task_id))["status"] in ("queued", "running"):
                seen.add(task["status"])
                await asyncio.sleep(0.02)
            assert "running" in seen  # Ark's output moderation strikes after the render ran
            assert task["status"] == "failed" and "content" not in task
            assert task["error"]["code"] == "OutputVideoSensitiveContentDetected"
            assert (await stats(client))["renders_completed"] == 0

    async def test_the_error_marker_fails_with_an_internal_error(self) -> None:
        async with seedance_sim() as client:
            task = await wait_done(client, await create(client, body("a dog surfing, Sim:Error please")))
            assert task["status"] == "failed"
            assert task["error"]["code"] == "InternalServiceError"

    async def test_knobs_force_each_ending_for_the_next_creates(self) -> None:
        async with seedance_sim() as client:
            knobs = {"ending_error_next": 1, "ending_moderation_next": 1, "ending_expire_next": 1}
            await client.patch("/_sim/faults", json=knobs, headers=KEY)
            endings = [await wait_done(client, await create(client)) for _ in range(4)]
            assert [task["status"] for task in endings] == ["failed", "failed", "expired", "succeeded"]
            assert endings[1]["error"]["code"] == "OutputVideoSensitiveContentDetected"
            await client.patch("/_sim/faults", json={"ending_video_next": 1}, headers=KEY)
            assert (await wait_done(client, await create(client, body("sim:error"))))["status"] == "succeeded"


class TestValidation:
    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param(body(duration=1), id="duration-below-1.0-range"),
            pytest.param(body(duration=13), id="duration-above-1.0-range"),
            pytest.param(body(duration=-1), id="auto-duration-on-1.0"),
            pytest.param({**body(), "model": "seedance-1-5-pro-251215", "duration": 3}, id="1.5-pro-below-4"),
            pytest.param({**body(), "model": "dreamina-seedance-2-0-260128", "duration": 16}, id="2.0-above-15"),
            pytest.param(body(duration="5"), id="duration-as-string"),
            pytest.param(body(duration=5.0), id="duration-as-float"),
            pytest.param(
                {**body(), "model": "dreamina-seedance-2-0-fast-260128", "resolution": "1080p"}, id="fast-1080p"
            ),
            pytest.param(body(resolution="4k"), id="4k-on-1.0"),
            pytest.param(body(ratio="2:1"), id="bad-ratio"),
            pytest.param(body(fps=24), id="unknown-field"),
            pytest.param(body(None), id="no-content"),
            pytest.param(body(""), id="empty-text"),
            pytest.param(
                {**body(), "model": "seedance-1-0-lite-t2v-250428", "content": [image_item(png((400, 400)))]},
                id="t2v-with-image",
            ),
            pytest.param({**body(), "model": "seedance-1-0-lite-i2v-250428"}, id="i2v-without-image"),
            pytest.param(
                body(content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}]), id="bad-base64"
            ),
            pytest.param(body(content=[image_item(png((100, 100)))]), id="image-too-small"),
            pytest.param(body(content=[image_item(png((1200, 400)))]), id="image-too-wide"),
            pytest.param(body(content=[image_item(png((400, 400)), mime="jpeg")]), id="image-not-what-it-says"),
            pytest.param(
                {
                    **body(),
                    "model": "seedance-1-0-pro-fast-251015",
                    "content": [image_item(png((400, 400))), image_item(png((400, 400)), "last_frame")],
                },
                id="last-frame-on-pro-fast",
            ),
            pytest.param(
                body(content=[{"type": "video_url", "video_url": {"url": "https://v.test/a.mp4"}}]), id="video-ref"
            ),
            pytest.param(body(generate_audio=True), id="audio-on-1.0"),
            pytest.param(
                {**body(), "model": "dreamina-seedance-2-0-260128", "duration": 5, "service_tier": "flex"},
                id="flex-on-2.0",
            ),
            pytest.param(body(execution_expires_after=10), id="expiry-too-short"),
            pytest.param(body(callback_url="ftp://x.test/hook"), id="callback-not-http"),
            pytest.param(body(duration=None), id="duration-null"),
        ],
    )
    async def test_refused_with_invalid_parameter_and_nothing_created(self, payload: dict[str, Any]) -> None:
        async with seedance_sim(queue_seconds=60) as client:
            assert_ark_error(await client.post(TASKS, json=payload, headers=KEY), 400, "InvalidParameter")
            assert (await stats(client))["tasks_created"] == 0

    async def test_an_unknown_model_is_not_found(self) -> None:
        async with seedance_sim() as client:
            response = await client.post(TASKS, json={**body(), "model": "veo-3"}, headers=KEY)
            assert_ark_error(response, 404, "InvalidEndpointOrModel.NotFound")

    async def test_valid_variants_are_accepted(self) -> None:
        async with seedance_sim(queue_seconds=60) as client:
            for payload in (
                {"model": PRO, "content": [{"type": "text", "text": "defaults only"}]},
                {**body(), "model": "seedance-1-5-pro-251215", "duration": -1, "generate_audio": False},
                {**body(), "model": "dreamina-seedance-2-0-260128", "duration": 15, "resolution": "1080p"},
                body(content=[{"type": "image_url", "image_url": {"url": "https://img.test/a.png"}}]),
                body(seed=7, watermark=False, camera_fixed=True, return_last_frame=False, service_tier="flex"),
                body(callback_url=CALLBACK_URL, execution_expires_after=3600),
            ):
                assert (await client.post(TASKS, json=payload, headers=KEY)).status_code == 200, payload
            defaults = (await client.get(TASKS, params={"page_size": 100}, headers=KEY)).json()["items"][-1]
            assert (defaults["duration"], defaults["resolution"], defaults["ratio"]) == (5, "720p", "16:9")

    async def test_unparseable_json_is_invalid_parameter(self) -> None:
        async with seedance_sim() as client:
            assert_ark_error(await client.post(TASKS, content=b"{nope", headers=KEY), 400, "InvalidParameter")


class TestAuth:
    async def test_every_ark_and_admin_route_needs_the_bearer_key(self) -> None:
        async with seedance_sim() as client:
            assert_ark_error(await client.post(TASKS, json=body()), 401, "AuthenticationError")
            wrong = {"authorization": "Bearer nope"}
            assert_ark_error(await client.post(TASKS, json=body(), headers=wrong), 401, "AuthenticationError")
            task_id = await create(client)
            assert_ark_error(await client.get(f"{TASKS}/{task_id}"), 401, "AuthenticationError")
            assert_ark_error(await client.get(TASKS, headers={"x-api-key": API_KEY}), 401, "AuthenticationError")
            assert_ark_error(await client.get("/_sim/stats"), 401, "AuthenticationError")
            assert (await stats(client))["create_requests"] == 1  # refused requests are not counted as creates


class TestDeleteAndList:
    async def test_delete_cancels_a_queued_task_and_keeps_its_record(self) -> None:
        async with seedance_sim(queue_seconds=60) as client:
            task_id = await create(client)
            assert (await client.delete(f"{TASKS}/{task_id}", headers=KEY)).json() == {}
            assert (await get(client, task_id))["status"] == "cancelled"

    async def test_delete_refuses_a_running_task(self) -> None:
        async with seedance_sim(render_seconds=60) as client:
            task_id = await create(client)
            assert (await get(client, task_id))["status"] == "running"
            response = await client.delete(f"{TASKS}/{task_id}", headers=KEY)
            assert_ark_error(response, 400, "OperationDenied.InvalidState")
            assert (await get(client, task_id))["status"] == "running"

    async def test_delete_removes_a_finished_tasks_record_and_file(self) -> None:
        async with seedance_sim() as client:
            task_id = await create(client)
            url = (await wait_done(client, task_id))["content"]["video_url"]
            assert (await client.delete(f"{TASKS}/{task_id}", headers=KEY)).status_code == 200
            assert_ark_error(await client.get(f"{TASKS}/{task_id}", headers=KEY), 404, "ResourceNotFound")
            assert (await client.get(url)).status_code == 404
            assert_ark_error(await client.delete(f"{TASKS}/{task_id}", headers=KEY), 404, "ResourceNotFound")

    async def test_the_list_pages_newest_first_and_filters(self) -> None:
        async with seedance_sim(queue_seconds=60) as client:
            ids = [await create(client, body(f"prompt {n}")) for n in range(5)]
            await client.delete(f"{TASKS}/{ids[0]}", headers=KEY)
            first = (await client.get(TASKS, params={"page_size": 2}, headers=KEY)).json()
            assert (first["total"], first["page_num"], first["page_size"]) == (5, 1, 2)
            assert [task["id"] for task in first["items"]] == [ids[4], ids[3]]
            third = (await client.get(TASKS, params={"page_size": 2, "page_num": 3}, headers=KEY)).json()
            assert [task["id"] for task in third["items"]] == [ids[0]]
            cancelled = (await client.get(TASKS, params={"filter.status": "cancelled"}, headers=KEY)).json()
            assert [task["id"] for task in cancelled["items"]] == [ids[0]]
            chosen = await client.get(
                TASKS, params=[("filter.task_ids", ids[1]), ("filter.task_ids", ids[2])], headers=KEY
            )
            assert chosen.json()["total"] == 2
            for bad in ({"page_size": 0}, {"page_size": 501}, {"page_num": "x"}, {"filter.status": "done"}):
                assert_ark_error(await client.get(TASKS, params=bad, headers=KEY), 400, "InvalidParameter")


class TestCallbacks:
    async def test_each_status_change_posts_the_task_object_unsigned(self) -> None:
        hooks = Callbacks()
        async with seedance_sim(hooks, queue_seconds=0.1) as client:
            task_id = await create(client, body(callback_url=CALLBACK_URL))
            task = await wait_done(client, task_id)
            bodies = await hooks.wait_for(3)
            assert [(hook["id"], hook["status"]) for hook in bodies] == [
                (task_id, "queued"),
                (task_id, "running"),
                (task_id, "succeeded"),
            ]
            assert bodies[-1] == task  # the callback body is the task object
            for request in hooks.received:
                assert str(request.url) == CALLBACK_URL
                assert request.headers["content-type"] == "application/json"
                assert not any(name.startswith("webhook-") or "signature" in name for name in request.headers)

    async def test_a_failure_is_posted_with_its_error_and_no_callback_url_means_none(self) -> None:
        hooks = Callbacks()
        async with seedance_sim(hooks) as client:
            await wait_done(client, await create(client, body("sim:error")))  # no callback_url: nothing sent
            failed = await wait_done(client, await create(client, body("sim:error", callback_url=CALLBACK_URL)))
            bodies = await hooks.wait_for(3)
            await asyncio.sleep(0.2)
            assert len(hooks.received) == 3
            assert bodies[-1]["status"] == "failed" and bodies[-1]["error"] == failed["error"]

    async def test_non_2xx_is_retried_with_the_same_body(self) -> None:
        hooks = Callbacks()
        hooks.statuses = [500, 503]
        async with seedance_sim(hooks, queue_seconds=60) as client:
            await create(client, body(callback_url=CALLBACK_URL))
            await hooks.wait_for(3)
            assert len({request.content for request in hooks.received}) == 1
            log = (await client.get("/_sim/webhooks", headers=KEY)).json()["data"]
            [delivery] = log
            assert [attempt["status_code"] for attempt in delivery["attempts"]] == [500, 503, 200]
            assert (delivery["status"], delivery["task_status"], delivery["callback_url"]) == (
                "delivered",
                "queued",
                CALLBACK_URL,
            )

    async def test_drop_and_duplicate_knobs(self) -> None:
        hooks = Callbacks()
        async with seedance_sim(hooks, queue_seconds=60) as client:
            await client.patch("/_sim/faults", json={"webhook_drop_next": 1}, headers=KEY)
            await create(client, body(callback_url=CALLBACK_URL))
            await client.patch("/_sim/faults", json={"webhook_duplicate": True}, headers=KEY)
            kept = await create(client, body(callback_url=CALLBACK_URL))
            bodies = await hooks.wait_for(2)
            assert [hook["id"] for hook in bodies] == [kept, kept]

    async def test_the_configured_webhook_url_overrides_every_destination(self) -> None:
        hooks = Callbacks()
        async with seedance_sim(hooks, queue_seconds=60, webhook_url="http://reachable.test/hook") as client:
            await create(client, body(callback_url=CALLBACK_URL))
            await create(client)  # without a callback_url of its own
            await hooks.wait_for(2)
            assert {str(request.url) for request in hooks.received} == {"http://reachable.test/hook"}


class TestBursts:
    async def test_rate_limit_next_answers_429_in_arks_envelope_and_is_counted(self) -> None:
        async with seedance_sim(queue_seconds=60) as client:
            await client.patch(
                "/_sim/faults", json={"rate_limit_next": 1, "rate_limit_code": "QuotaExceeded"}, headers=KEY
            )
            assert_ark_error(await client.post(TASKS, json=body(), headers=KEY), 429, "QuotaExceeded")
            await create(client)
            counts = await stats(client)
            assert (counts["create_requests"], counts["tasks_created"]) == (2, 1)

    async def test_a_server_error_burst_hits_only_the_chosen_route(self) -> None:
        async with seedance_sim(queue_seconds=60) as client:
            knobs = {"server_error_next": 1, "server_error_status": 503, "burst_routes": ["get_task"]}
            await client.patch("/_sim/faults", json=knobs, headers=KEY)
            task_id = await create(client)
            assert_ark_error(await client.get(f"{TASKS}/{task_id}", headers=KEY), 503, "ServiceUnavailable")
            assert (await get(client, task_id))["status"] == "queued"

    async def test_a_model_the_account_has_not_activated_is_model_not_open(self) -> None:
        async with seedance_sim() as client:
            await client.patch("/_sim/faults", json={"model_not_open": [PRO]}, headers=KEY)
            assert_ark_error(await client.post(TASKS, json=body(), headers=KEY), 404, "ModelNotOpen")
            assert (await stats(client))["tasks_created"] == 0

    async def test_synthetic_then_truncated_download(self) -> None:
        async with seedance_sim() as client:
            knobs = {
                "synthetic_asset_bytes": 40_000,
                "content_truncate_after_bytes": 1_000,
                "content_faults_remaining": 1,
            }
            await client.patch("/_sim/faults", json=knobs, headers=KEY)
            url = (await wait_done(client, await create(client)))["content"]["video_url"]
            truncated = await client.get(url)
            assert (len(truncated.content), truncated.headers["content-length"]) == (1_000, "40000")
            whole = await client.get(url)
            assert len(whole.content) == 40_000 and whole.content[4:8] == b"ftyp"
