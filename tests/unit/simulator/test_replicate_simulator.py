"""The Replicate simulator's contract, over ASGITransport: auth, the prediction lifecycle, real MP4 outputs and
their removal, per-request signed webhooks, cancel, the cursor-paged list, input schemas and the fault knobs.

Webhooks go over real loopback HTTP to a small recording receiver (the simulator's sender is a real client).
"""

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
from app.simulator import simulator_app
from app.simulator.replicate import create_replicate_simulator_app, replicate_simulator_running
from tests.support.simulator import Receiver, served

TOKEN = "r8_simulated_token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
BASE_URL = "http://replicate.test"
VEO = "/v1/models/google/veo-3/predictions"
FPS = 4
THROTTLED = "Request was throttled. Your rate limit resets in ~30s."
PREDICTION_KEYS = {
    "id",
    "model",
    "version",
    "input",
    "logs",
    "output",
    "data_removed",
    "error",
    "status",
    "source",
    "created_at",
    "started_at",
    "completed_at",
    "urls",
    "metrics",
}


@contextlib.asynccontextmanager
async def replicate(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator in process; the client sends no token by itself (tests choose what to send)."""
    values: dict[str, Any] = {
        "api_key": TOKEN,
        "queue_seconds": 0,
        "render_seconds": 0.2,
        "fps": FPS,
        "webhook_secret": SECRET,
        "webhook_retry_base_seconds": 0.05,
        "webhook_max_attempts": 3,
        **overrides,
    }
    app = create_replicate_simulator_app(SimulatorSettings(**values))
    async with (
        replicate_simulator_running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with served(receiver) as base_url:
        receiver.url = f"{base_url}/hooks"
        yield receiver


def body(prompt: str = "A calico cat playing a piano on stage", **fields: Any) -> dict[str, Any]:
    return {"input": {"prompt": prompt, "duration": 4, "aspect_ratio": "16:9", "resolution": "720p"}, **fields}


async def create(client: httpx.AsyncClient, payload: dict[str, Any] | None = None, path: str = VEO) -> dict[str, Any]:
    response = await client.post(path, json=payload or body(), headers=AUTH)
    assert response.status_code == 201, response.text
    prediction: dict[str, Any] = response.json()
    return prediction


async def wait_ended(client: httpx.AsyncClient, prediction_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/v1/predictions/{prediction_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        prediction: dict[str, Any] = response.json()
        if prediction["status"] in ("succeeded", "failed", "canceled"):
            return prediction
        assert time.monotonic() < deadline, prediction
        await asyncio.sleep(0.05)


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get("/_sim/stats", headers=AUTH)).json()
    return result


def assert_problem(response: httpx.Response, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    problem: dict[str, Any] = response.json()
    assert (problem["status"], problem["title"]) == (status, title)
    assert problem["detail"]
    return problem


def mp4_shape(data: bytes) -> tuple[str, int, int, int]:
    """(codec, width, height, frame count) of an MP4, decoded with PyAV."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.name, stream.width, stream.height, frames


def data_uri(size: tuple[int, int], colour: str = "navy") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class TestAuth:
    async def test_the_api_needs_the_token_and_the_files_do_not(self) -> None:
        async with replicate() as client:
            assert_problem(await client.post(VEO, json=body()), 401, "Unauthenticated")
            wrong = {"Authorization": "Bearer r8_wrong"}
            assert_problem(await client.post(VEO, json=body(), headers=wrong), 401, "Unauthenticated")
            # Replicate's older scheme is taken too.
            older = await client.post(VEO, json=body(), headers={"Authorization": f"Token {TOKEN}"})
            assert older.status_code == 201
            prediction_id = older.json()["id"]
            for method, path in (
                ("GET", f"/v1/predictions/{prediction_id}"),
                ("GET", "/v1/predictions"),
                ("POST", f"/v1/predictions/{prediction_id}/cancel"),
                ("GET", "/_sim/stats"),
            ):
                assert_problem(await client.request(method, path), 401, "Unauthenticated")
            output = (await wait_ended(client, prediction_id))["output"]
            assert (await client.get(output)).status_code == 200  # no token: the path is the capability

    async def test_the_signing_secret_is_published_to_the_account(self) -> None:
        async with replicate() as client:
            response = await client.get("/v1/webhooks/default/secret", headers=AUTH)
            assert response.json() == {"key": SECRET}

    async def test_the_cli_builds_it_by_kind(self) -> None:
        app = simulator_app("replicate", SimulatorSettings(api_key=TOKEN))
        assert app.title == "Video Gateway Replicate simulator"


class TestLifecycle:
    async def test_starting_processing_succeeded_with_a_real_mp4(self) -> None:
        async with replicate(queue_seconds=0.3, render_seconds=0.4) as client:
            created = await create(client)
            assert set(created) == PREDICTION_KEYS
            assert re.fullmatch(r"[a-z0-9]{26}", created["id"])
            assert re.fullmatch(r"[0-9a-f]{64}", created["version"])
            assert (created["status"], created["model"], created["output"], created["source"]) == (
                "starting",
                "google/veo-3",
                None,
                "api",
            )
            assert created["input"] == body()["input"]
            assert created["urls"]["get"] == f"{BASE_URL}/v1/predictions/{created['id']}"
            assert created["urls"]["cancel"] == f"{BASE_URL}/v1/predictions/{created['id']}/cancel"
            assert created["created_at"].endswith("Z") and created["started_at"] is None

            seen = {created["status"]}
            deadline = time.monotonic() + 20
            while "succeeded" not in seen:
                current = (await client.get(f"/v1/predictions/{created['id']}", headers=AUTH)).json()
                seen.add(current["status"])
                if current["status"] == "processing":
                    assert current["started_at"] and "Generating" in current["logs"]
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert seen == {"starting", "processing", "succeeded"}

            done = await wait_ended(client, created["id"])
            assert done["completed_at"] and done["error"] is None and done["data_removed"] is False
            assert set(done["metrics"]) == {"predict_time", "total_time"}
            assert re.fullmatch(rf"{BASE_URL}/files/[\w-]+/output\.mp4", done["output"])

            mp4 = await client.get(done["output"])
            assert mp4.status_code == 200
            assert mp4.headers["content-type"] == "video/mp4"
            assert int(mp4.headers["content-length"]) == len(mp4.content)
            assert mp4.content[4:8] == b"ftyp"
            assert mp4_shape(mp4.content) == ("h264", 1280, 720, 4 * FPS)

            counts = await stats(client)
            assert (counts["create_requests"], counts["predictions_created"], counts["renders_completed"]) == (1, 1, 1)
            assert counts["requests"]["serve_file"] == 1
            assert "serve_file_with_authorization" not in counts["requests"]

    async def test_a_file_fetched_with_a_token_is_counted(self) -> None:
        async with replicate() as client:
            output = (await wait_ended(client, (await create(client))["id"]))["output"]
            assert (await client.get(output, headers=AUTH)).status_code == 200
            assert (await stats(client))["requests"]["serve_file_with_authorization"] == 1

    async def test_prefer_wait_holds_the_create_until_the_prediction_ends(self) -> None:
        async with replicate(render_seconds=0.3) as client:
            response = await client.post(VEO, json=body(), headers={**AUTH, "Prefer": "wait=10"})
            assert response.status_code == 201
            assert response.json()["status"] == "succeeded"
            assert (await stats(client))["requests"]["create_prediction_prefer_wait"] == 1

    @pytest.mark.parametrize(
        ("path", "payload", "size"),
        [
            (
                "/v1/models/kwaivgi/kling-v2.1/predictions",
                {"start_image": data_uri((72, 128)), "duration": 5},
                (720, 1280),
            ),
            ("/v1/models/kwaivgi/kling-v2.1-master/predictions", {"aspect_ratio": "1:1"}, (1080, 1080)),
            ("/v1/models/wan-video/wan-2.2-t2v-fast/predictions", {"aspect_ratio": "9:16"}, (480, 832)),
            ("/v1/models/bytedance/seedance-1-lite/predictions", {"resolution": "480p", "duration": 2}, (864, 480)),
        ],
    )
    async def test_each_model_renders_the_frame_its_input_asks_for(
        self, path: str, payload: dict[str, Any], size: tuple[int, int]
    ) -> None:
        async with replicate(fps=1) as client:
            prediction = await create(client, {"input": {"prompt": "a heron", **payload}}, path=path)
            output = (await wait_ended(client, prediction["id"]))["output"]
            assert mp4_shape((await client.get(output)).content)[1:3] == size


class TestEndings:
    async def test_a_blocked_word_fails_with_replicates_sensitive_content_error(self) -> None:
        async with replicate() as client:
            prediction = await wait_ended(client, (await create(client, body("something FORBIDDEN here")))["id"])
            assert (prediction["status"], prediction["output"]) == ("failed", None)
            assert prediction["error"].endswith("(E005)")
            assert "flagged as sensitive" in prediction["error"]
            assert (await stats(client))["renders_completed"] == 0

    async def test_the_error_marker_fails_with_a_model_error(self) -> None:
        async with replicate() as client:
            prediction = await wait_ended(client, (await create(client, body("a dog surfing, Sim:Error")))["id"])
            assert prediction["status"] == "failed"
            assert prediction["error"] and "E005" not in prediction["error"]

    async def test_knobs_force_each_ending_for_the_next_creates(self) -> None:
        async with replicate() as client:
            knobs = {"ending_error_next": 1, "ending_moderation_next": 1}
            await client.patch("/_sim/faults", json=knobs, headers=AUTH)
            errored = await wait_ended(client, (await create(client))["id"])
            moderated = await wait_ended(client, (await create(client))["id"])
            healthy = await wait_ended(client, (await create(client))["id"])
            assert errored["status"] == "failed" and "E005" not in errored["error"]
            assert moderated["status"] == "failed" and "E005" in moderated["error"]
            assert healthy["status"] == "succeeded"
            await client.patch("/_sim/faults", json={"ending_success_next": 1}, headers=AUTH)
            forced = await wait_ended(client, (await create(client, body("sim:error forbidden")))["id"])
            assert forced["status"] == "succeeded"


class TestValidation:
    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            pytest.param({"input": {"prompt": "p", "duration": 5}}, "input.duration", id="duration-not-offered"),
            pytest.param({"input": {"prompt": "p", "duration": "8"}}, "input.duration", id="duration-as-string"),
            pytest.param({"input": {"prompt": "p", "duration": 8.5}}, "input.duration", id="fractional-duration"),
            pytest.param({"input": {"prompt": "p", "aspect_ratio": "4:3"}}, "input.aspect_ratio", id="bad-aspect"),
            pytest.param({"input": {"prompt": "p", "seconds": 8}}, "input.seconds", id="unknown-input"),
            pytest.param({"input": {"duration": 8}}, "input.prompt", id="no-prompt"),
            pytest.param(
                {"input": {"prompt": "p", "resolution": "1080p", "duration": 4}}, "input.duration", id="1080p-4s"
            ),
            pytest.param(
                {"input": {"prompt": "p", "image": "data:image/png;base64,!!"}}, "input.image", id="bad-base64"
            ),
            pytest.param({"input": {"prompt": "p", "image": "ftp://x/y.png"}}, "input.image", id="bad-uri"),
            pytest.param({**body(), "webhook_events_filter": ["done"]}, "webhook_events_filter", id="bad-filter"),
            pytest.param({**body(), "webhook": "not a url"}, "webhook", id="bad-webhook"),
            pytest.param({**body(), "version": "abc"}, "version", id="unknown-body-field"),
            pytest.param({"input": "p"}, "input", id="input-not-an-object"),
        ],
    )
    async def test_refused_with_422_naming_the_field(self, payload: dict[str, Any], field: str) -> None:
        async with replicate(queue_seconds=60) as client:
            problem = assert_problem(await client.post(VEO, json=payload, headers=AUTH), 422, "Input validation failed")
            assert field in [item["field"] for item in problem["invalid_fields"]]
            assert f"- {field}:" in problem["detail"]
            assert (await stats(client))["predictions_created"] == 0

    async def test_kling_needs_its_start_image_and_hailuo_1080p_only_six_seconds(self) -> None:
        async with replicate(queue_seconds=60) as client:
            kling = await client.post(
                "/v1/models/kwaivgi/kling-v2.1/predictions", json={"input": {"prompt": "p"}}, headers=AUTH
            )
            assert (
                assert_problem(kling, 422, "Input validation failed")["invalid_fields"][0]["field"]
                == "input.start_image"
            )
            hailuo = {"input": {"prompt": "p", "resolution": "1080p", "duration": 10}}
            refused = await client.post("/v1/models/minimax/hailuo-02/predictions", json=hailuo, headers=AUTH)
            assert_problem(refused, 422, "Input validation failed")

    async def test_unknown_model_is_404_and_bad_json_is_400(self) -> None:
        async with replicate() as client:
            assert_problem(
                await client.post("/v1/models/google/veo-9/predictions", json=body(), headers=AUTH), 404, "Not found"
            )
            assert_problem(await client.post(VEO, content=b"{nope", headers=AUTH), 400, "Bad request")
            assert_problem(await client.get("/v1/predictions/doesnotexist", headers=AUTH), 404, "Not found")
            # No delete exists.
            prediction_id = (await create(client))["id"]
            assert_problem(await client.delete(f"/v1/predictions/{prediction_id}", headers=AUTH), 404, "Not found")


class TestDataRemoval:
    async def test_input_output_and_file_are_gone_ttl_after_the_end(self) -> None:
        async with replicate(ttl_seconds=0.5) as client:
            done = await wait_ended(client, (await create(client))["id"])
            assert (await client.get(done["output"])).status_code == 200
            await asyncio.sleep(0.8)
            assert_problem(await client.get(done["output"]), 404, "Not found")
            later = (await client.get(f"/v1/predictions/{done['id']}", headers=AUTH)).json()
            assert (later["status"], later["data_removed"], later["input"], later["output"]) == (
                "succeeded",
                True,
                {},
                None,
            )

    async def test_admin_expire_removes_the_data_now_and_only_of_an_ended_prediction(self) -> None:
        async with replicate(ttl_seconds=3600) as client:
            done = await wait_ended(client, (await create(client))["id"])
            expired = await client.post(f"/_sim/predictions/{done['id']}/expire", headers=AUTH)
            assert expired.json() == {"id": done["id"], "data_removed": True}
            assert_problem(await client.get(done["output"]), 404, "Not found")
            await client.patch("/_sim/config", json={"queue_seconds": 60}, headers=AUTH)
            running = await create(client)
            assert_problem(
                await client.post(f"/_sim/predictions/{running['id']}/expire", headers=AUTH), 400, "Bad request"
            )


class TestCancel:
    async def test_a_running_prediction_is_canceled_and_an_ended_one_is_left_as_is(self) -> None:
        async with replicate(queue_seconds=0, render_seconds=30) as client:
            running = await create(client)
            canceled = await client.post(f"/v1/predictions/{running['id']}/cancel", headers=AUTH)
            assert canceled.status_code == 200
            assert (canceled.json()["status"], canceled.json()["output"]) == ("canceled", None)
            assert canceled.json()["completed_at"]
            await client.patch("/_sim/config", json={"render_seconds": 0.1}, headers=AUTH)
            done = await wait_ended(client, (await create(client))["id"])
            again = (await client.post(f"/v1/predictions/{done['id']}/cancel", headers=AUTH)).json()
            assert (again["status"], again["output"]) == ("succeeded", done["output"])
            assert_problem(await client.post("/v1/predictions/nope/cancel", headers=AUTH), 404, "Not found")


class TestList:
    async def test_newest_first_in_cursor_pages(self) -> None:
        async with replicate(queue_seconds=60) as client:
            await client.patch("/_sim/config", json={"list_page_size": 2}, headers=AUTH)
            ids = [(await create(client, body(f"p{n}")))["id"] for n in range(5)]
            seen: list[str] = []
            url: str | None = "/v1/predictions"
            pages = 0
            while url is not None:
                page = (await client.get(url, headers=AUTH)).json()
                assert set(page) == {"previous", "next", "results"}
                assert len(page["results"]) <= 2
                seen.extend(result["id"] for result in page["results"])
                assert all(result["input"]["prompt"].startswith("p") for result in page["results"])
                url = page["next"]
                pages += 1
            assert seen == list(reversed(ids))
            assert pages == 3
            assert_problem(
                await client.get("/v1/predictions", params={"cursor": "%%%"}, headers=AUTH), 400, "Bad request"
            )


async def settled_deliveries(client: httpx.AsyncClient, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        data: list[dict[str, Any]] = (await client.get("/_sim/webhooks", headers=AUTH)).json()["data"]
        if sum(d["status"] not in ("pending", "held") for d in data) >= count:
            return data
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.02)


class TestWebhooks:
    async def test_completed_only_is_one_signed_prediction_object(self, receiver: Receiver) -> None:
        async with replicate() as client:
            created = await create(client, body(webhook=receiver.url, webhook_events_filter=["completed"]))
            done = await wait_ended(client, created["id"])
            [hook] = await receiver.wait_for(1)
            event = Webhook(SECRET).verify(hook.body, hook.headers)
            assert event == done  # the body is the prediction itself: no type, no data wrapper
            assert hook.headers["webhook-id"].startswith("msg_")
            assert hook.headers["content-type"] == "application/json"
            await asyncio.sleep(0.3)
            assert len(receiver.received) == 1  # start, logs and output were filtered out
            [log] = await settled_deliveries(client, 1)
            assert (log["event"], log["prediction_id"], log["status"], log["url"]) == (
                "completed",
                created["id"],
                "delivered",
                receiver.url,
            )

    async def test_without_a_filter_every_event_is_sent_in_order(self, receiver: Receiver) -> None:
        async with replicate() as client:
            created = await create(client, body(webhook=receiver.url))
            await wait_ended(client, created["id"])
            hooks = await receiver.wait_for(4)
            statuses = [json.loads(hook.body)["status"] for hook in hooks]
            log = await settled_deliveries(client, 4)
            assert [delivery["event"] for delivery in log] == ["start", "logs", "output", "completed"]
            assert sorted(statuses) == sorted(["starting", "processing", "succeeded", "succeeded"])
            for hook in hooks:
                Webhook(SECRET).verify(hook.body, hook.headers)

    async def test_failures_and_cancels_are_completed_events_too(self, receiver: Receiver) -> None:
        async with replicate(render_seconds=30) as client:
            filtered: dict[str, Any] = {"webhook": receiver.url, "webhook_events_filter": ["completed"]}
            running = await create(client, body(**filtered))
            await client.post(f"/v1/predictions/{running['id']}/cancel", headers=AUTH)
            await client.patch("/_sim/config", json={"render_seconds": 0.1}, headers=AUTH)
            await wait_ended(client, (await create(client, body("forbidden", **filtered)))["id"])
            hooks = await receiver.wait_for(2)
            assert sorted(json.loads(hook.body)["status"] for hook in hooks) == ["canceled", "failed"]

    async def test_non_2xx_is_retried_with_the_same_id(self, receiver: Receiver) -> None:
        receiver.statuses = [500, 503]
        async with replicate() as client:
            await create(client, body(webhook=receiver.url, webhook_events_filter=["completed"]))
            hooks = await receiver.wait_for(3)
            assert len({hook.headers["webhook-id"] for hook in hooks}) == 1
            for hook in hooks:
                Webhook(SECRET).verify(hook.body, hook.headers)
            [log] = await settled_deliveries(client, 1)
            assert [attempt["status_code"] for attempt in log["attempts"]] == [500, 503, 200]

    async def test_drop_and_duplicate_knobs(self, receiver: Receiver) -> None:
        async with replicate() as client:
            filtered: dict[str, Any] = {"webhook": receiver.url, "webhook_events_filter": ["completed"]}
            await client.patch("/_sim/faults", json={"webhook_drop_next": 1}, headers=AUTH)
            await wait_ended(client, (await create(client, body(**filtered)))["id"])
            await client.patch("/_sim/faults", json={"webhook_duplicate": True}, headers=AUTH)
            kept = await create(client, body(**filtered))
            hooks = await receiver.wait_for(2)
            assert {json.loads(hook.body)["id"] for hook in hooks} == {kept["id"]}
            assert hooks[0].headers["webhook-id"] == hooks[1].headers["webhook-id"]
            statuses = [d["status"] for d in await settled_deliveries(client, 3)]
            assert statuses == ["dropped", "delivered", "delivered"]

    async def test_no_webhook_asked_for_means_none_sent(self, receiver: Receiver) -> None:
        async with replicate() as client:
            await wait_ended(client, (await create(client))["id"])
            await asyncio.sleep(0.2)
            assert receiver.received == []
            assert (await client.get("/_sim/webhooks", headers=AUTH)).json()["data"] == []


class TestFaults:
    async def test_rate_limit_next_answers_replicates_throttling_body_and_retry_after(self) -> None:
        async with replicate(queue_seconds=60) as client:
            await client.patch("/_sim/faults", json={"rate_limit_next": 2}, headers=AUTH)
            for _ in range(2):
                response = await client.post(VEO, json=body(), headers=AUTH)
                assert response.status_code == 429
                assert response.json() == {"detail": THROTTLED}
                assert response.headers["retry-after"] == "30"
            assert (await client.post(VEO, json=body(), headers=AUTH)).status_code == 201
            counts = await stats(client)
            assert (counts["create_requests"], counts["predictions_created"]) == (3, 1)

    async def test_server_error_next_hits_only_the_chosen_route(self) -> None:
        async with replicate(queue_seconds=60) as client:
            knobs = {"server_error_next": 1, "server_error_status": 503, "burst_routes": ["create_prediction"]}
            await client.patch("/_sim/faults", json=knobs, headers=AUTH)
            assert_problem(await client.post(VEO, json=body(), headers=AUTH), 503, "Service Unavailable")
            created = await create(client)
            assert (await client.get(f"/v1/predictions/{created['id']}", headers=AUTH)).status_code == 200
            assert (await stats(client))["predictions_created"] == 1

    async def test_synthetic_asset_then_truncated_download(self) -> None:
        async with replicate() as client:
            knobs = {
                "synthetic_asset_bytes": 40_000,
                "content_truncate_after_bytes": 1_000,
                "content_faults_remaining": 1,
            }
            await client.patch("/_sim/faults", json=knobs, headers=AUTH)
            output = (await wait_ended(client, (await create(client))["id"]))["output"]
            truncated = await client.get(output)
            assert (len(truncated.content), truncated.headers["content-length"]) == (1_000, "40000")
            whole = await client.get(output)
            assert len(whole.content) == 40_000 and whole.content[4:8] == b"ftyp"

    async def test_unknown_knob_is_refused_and_reset_forgets_everything(self) -> None:
        async with replicate(queue_seconds=60) as client:
            assert_problem(await client.patch("/_sim/faults", json={"nope": 1}, headers=AUTH), 400, "Bad request")
            prediction_id = (await create(client))["id"]
            assert (await client.post("/_sim/reset", headers=AUTH)).json() == {"reset": True}
            assert_problem(await client.get(f"/v1/predictions/{prediction_id}", headers=AUTH), 404, "Not found")
            assert (await stats(client))["predictions_created"] == 0
