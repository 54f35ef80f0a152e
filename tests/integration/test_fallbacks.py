"""Fallbacks across profiles in process: Veo direct (a `gemini` profile), then Veo on fal (a `fal` profile).

Three simulators behind one transport (OpenAI's contract for the default profile, the Gemini API, fal's queue),
real Postgres and S3. `VG_FALLBACKS` sends `veo-3.1-generate-preview` to fal's `fal-ai/veo3.1` when Veo direct
cannot take the create, and `sora-2` to Veo direct when the default cannot. The transport adds what no
simulator knob gives: a host that refuses connections, and creates answered 429 with a chosen Retry-After.
Profiles are named `fb-*` so that no other test's stack (several name theirs `veo` or `fal`) claims these videos.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import func, select, update

from app.archive import service as archive_service
from app.archive.jobs import JobContext, run_job
from app.archive.queue import ClaimedJob
from app.archive.storage import ArchiveStorage
from app.archive.submissions import resolve_cut_off_creates
from app.archive.worker import Worker
from app.core.config import FallbackTarget, S3Settings, Settings, SimulatorSettings, UpstreamProfile
from app.core.db import Database
from app.main import create_app
from app.models import ArchiveJob, Asset, JobKind, Video, WebhookEvent
from app.simulator import create_gemini_simulator_app, create_simulator_app
from app.simulator.fal import create_fal_simulator_app
from app.upstream.router import UpstreamRouter
from tests.integration.test_fal_profile import Deferred, served
from tests.support.factories import make_video
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import make_settings
from tests.support.worker import worker_settings

VEO = "veo-3.1-generate-preview"
FAL_VEO = "fal-ai/veo3.1"
# An OpenAI-contract provider that names `sora-2-pro` its own way (the cut-off create's search).
ALT_MODEL = "alt-video-1"
MAIN, VEO_HOST, FAL_HOST, ALT_HOST = "main.test", "veo.test", "fal.test", "alt.test"
KEYS = {MAIN: "sim-key", VEO_HOST: "goog-key", FAL_HOST: "fal-key", ALT_HOST: "alt-key"}
# How each simulator's `/_sim` routes want the key.
ADMIN_HEADERS = {
    MAIN: {"authorization": "Bearer sim-key"},
    VEO_HOST: {"x-goog-api-key": "goog-key"},
    FAL_HOST: {"authorization": "Key fal-key"},
    ALT_HOST: {"authorization": "Bearer alt-key"},
}
ADMIN_KEY = "vg-admin-fallbacks-test-0123456789"


class Upstreams(httpx.AsyncBaseTransport):
    """Each host's simulator in process, plus two failures of a create: `refusing` hosts refuse every connection
    (nothing reaches them); `busy` hosts answer every create 429 with that many seconds of Retry-After.
    `posts` counts the creates that were attempted at each host, whatever became of them."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        self.transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}
        self.refusing: set[str] = set()
        self.busy: dict[str, int] = {}
        self.posts: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.method == "POST":
            self.posts[host] += 1
        if host in self.refusing:
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "POST" and host in self.busy:
            body = {"error": {"code": 429, "message": f"{host} is busy", "status": "RESOURCE_EXHAUSTED"}}
            return httpx.Response(429, json=body, headers={"retry-after": str(self.busy[host])})
        return await self.transports[host].handle_async_request(request)


@dataclass
class Stack:
    settings: Settings
    app: FastAPI
    api: httpx.AsyncClient
    upstreams: Upstreams
    apps: dict[str, FastAPI]
    database: Database
    context: JobContext

    async def create(self, **fields: str) -> httpx.Response:
        parts = {"prompt": "a heron at dawn", "model": VEO, "seconds": "4", "size": "1280x720", **fields}
        return await self.api.post("/v1/videos", files={name: (None, value) for name, value in parts.items()})

    def admin(self, host: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.apps[host]), base_url=f"http://{host}", headers=ADMIN_HEADERS[host]
        )

    async def sim_creates(self, host: str) -> int:
        """Creates the simulator itself received (and counted), refused by a fault or not."""
        async with self.admin(host) as admin:
            count: int = (await admin.get("/_sim/stats")).json()["create_requests"]
            return count

    async def faults(self, host: str, **knobs: Any) -> None:
        async with self.admin(host) as admin:
            response = await admin.patch("/_sim/faults", json=knobs)
            assert response.status_code == 200, response.text

    async def row(self, video_id: str) -> Video:
        async with self.database.sessionmaker() as session:
            video = await session.get(Video, video_id)
            assert video is not None
            return video

    async def settle(self, video_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            video: dict[str, Any] = (await self.api.get(f"/v1/videos/{video_id}")).json()
            if video["status"] in ("completed", "failed"):
                return video
            assert time.monotonic() < deadline, video
            await asyncio.sleep(0.1)

    async def videos(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = (await self.api.get("/v1/videos")).json()["data"]
        return data


StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


def fallbacks_metric(source: str, target: str, reason: str) -> float:
    labels = {"from": source, "to": target, "reason": reason}
    return REGISTRY.get_sample_value("vg_create_fallbacks_total", labels) or 0.0


@pytest.fixture
def make_stack(
    database_url: str, s3_settings: S3Settings, new_caller_key: NewCaller, database: Database
) -> StackFactory:
    """`async with make_stack(veo={"breaker_failures": 2}) as stack:` (profile fields by profile)."""

    @asynccontextmanager
    async def build(*, veo: dict[str, Any] | None = None, fal: dict[str, Any] | None = None) -> AsyncIterator[Stack]:
        timing = {"queue_seconds": 0.1, "render_seconds": 0.5, "fps": 2}
        apps = {
            MAIN: create_simulator_app(SimulatorSettings(api_key=KEYS[MAIN], **timing)),
            VEO_HOST: create_gemini_simulator_app(SimulatorSettings(api_key=KEYS[VEO_HOST], **timing)),
            FAL_HOST: create_fal_simulator_app(SimulatorSettings(api_key=KEYS[FAL_HOST], **timing)),
            ALT_HOST: create_simulator_app(SimulatorSettings(api_key=KEYS[ALT_HOST], **timing)),
        }
        quick = {"retry_base_seconds": 0.01, "retry_max_seconds": 0.05, "sends_webhooks": False}
        base = make_settings(database_url, upstream_base_url=f"http://{MAIN}/v1")
        settings = base.model_copy(
            update={
                "s3": s3_settings,
                "worker": worker_settings(),
                "admin_api_key": SecretStr(ADMIN_KEY),
                "upstreams": {
                    "fb-veo": UpstreamProfile(
                        kind="gemini",
                        base_url=f"http://{VEO_HOST}",
                        api_key=KEYS[VEO_HOST],
                        models=[VEO],
                        **{**quick, **(veo or {})},
                    ),
                    # No models of its own: it renders only what the fallbacks send it.
                    "fb-fal": UpstreamProfile(
                        kind="fal",
                        base_url=f"http://{FAL_HOST}",
                        api_key=KEYS[FAL_HOST],
                        # The simulator's CDN stand-in is its own host; plain http is for dev mode only.
                        content_redirect_hosts=[FAL_HOST],
                        **{**quick, **(fal or {})},
                    ),
                    "fb-alt": UpstreamProfile(
                        base_url=f"http://{ALT_HOST}/v1",
                        api_key=KEYS[ALT_HOST],
                        **quick,
                    ),
                },
                "fallbacks": {
                    VEO: [FallbackTarget(profile="fb-fal", model=FAL_VEO)],
                    "sora-2": [FallbackTarget(profile="fb-veo", model=VEO)],
                    "sora-2-pro": [FallbackTarget(profile="fb-alt", model=ALT_MODEL)],
                },
            }
        )
        transport = Upstreams(apps)
        app = create_app(settings, upstream_transport=transport)
        worker_upstreams = UpstreamRouter(settings, transport=transport)
        storage = ArchiveStorage(s3_settings)
        await storage.ensure_bucket()
        async with contextlib.AsyncExitStack() as running:
            for simulator in apps.values():
                await running.enter_async_context(simulator.router.lifespan_context(simulator))
            await running.enter_async_context(app.router.lifespan_context(app))
            api = await running.enter_async_context(gateway_client(app, await new_caller_key()))
            context = JobContext(settings=settings, database=database, upstreams=worker_upstreams, storage=storage)
            built = Stack(settings, app, api, transport, apps, database, context)
            yield built
            # Renders still in flight are deleted, so the reconcilers of later tests' stacks (which share the
            # database and know no `fb-*` profile) have nothing of ours to poll.
            transport.refusing.clear()
            transport.busy.clear()
            for item in await built.videos():
                if item["status"] in ("queued", "in_progress"):
                    await api.delete(f"/v1/videos/{item['id']}")
        await worker_upstreams.aclose()
        storage.close()

    return build


@pytest.fixture
async def stack(make_stack: StackFactory) -> AsyncIterator[Stack]:
    async with make_stack() as built:
        yield built


class TestFallingBack:
    async def test_a_refused_connection_sends_the_create_to_the_fallback_which_renders_and_archives_it(
        self, stack: Stack
    ) -> None:
        stack.upstreams.refusing.add(VEO_HOST)
        fal_before = await stack.sim_creates(FAL_HOST)
        created = await stack.create()
        assert created.status_code == 200, created.text
        video = created.json()
        # The caller sees the model they asked for, never fal's endpoint id.
        assert (video["model"], video["seconds"], video["size"]) == (VEO, "4", "1280x720")
        row = await stack.row(video["id"])
        assert (row.upstream_profile, row.upstream_model, row.model) == ("fb-fal", FAL_VEO, VEO)
        assert row.upstream_id is not None and row.upstream_id.startswith(FAL_VEO + ":")
        # Veo direct was tried (and retried: nothing had reached it) before fal.
        assert stack.upstreams.posts[VEO_HOST] == stack.settings.upstreams["fb-veo"].create_attempts
        assert await stack.sim_creates(FAL_HOST) == fal_before + 1

        settled = await stack.settle(video["id"])
        assert (settled["status"], settled["model"]) == ("completed", VEO)
        assert [(item["id"], item["model"]) for item in await stack.videos()] == [(video["id"], VEO)]

        async with stack.database.sessionmaker.begin() as session:
            current = await session.get(Video, video["id"])
            assert current is not None
            await archive_service.enqueue_sync(session, video=current, settings=stack.settings.worker)
        await Worker(stack.context, worker_id="fallbacks-test").run_until_idle()
        async with stack.database.sessionmaker() as session:
            assets = {
                asset.variant: asset
                for asset in (await session.execute(select(Asset).where(Asset.video_id == video["id"]))).scalars()
            }
        assert {variant: asset.state for variant, asset in assets.items()} == {
            "video": "archived",
            "thumbnail": "archived",
            "spritesheet": "archived",
        }
        served = await stack.api.get(f"/v1/videos/{video['id']}/content")
        assert served.status_code == 200
        assert hashlib.sha256(served.content).hexdigest() == assets["video"].sha256

    async def test_a_429_moves_on_and_the_pause_it_leaves_skips_the_profile_without_a_call(
        self, stack: Stack, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="app.videos.service")
        stack.upstreams.busy[VEO_HOST] = 30
        rate_limited = fallbacks_metric("fb-veo", "fb-fal", "rate_limited")
        throttled = fallbacks_metric("fb-veo", "fb-fal", "throttled")

        first = await stack.create()
        assert first.status_code == 200, first.text
        attempts = stack.upstreams.posts[VEO_HOST]
        assert attempts == stack.settings.upstreams["fb-veo"].create_attempts  # 429s are retried first
        second = await stack.create()
        assert second.status_code == 200, second.text
        # Veo direct asked for 30 s: the second create did not knock.
        assert stack.upstreams.posts[VEO_HOST] == attempts
        for created in (first, second):
            row = await stack.row(created.json()["id"])
            assert (row.upstream_profile, row.upstream_model) == ("fb-fal", FAL_VEO)
        assert fallbacks_metric("fb-veo", "fb-fal", "rate_limited") == rate_limited + 1
        assert fallbacks_metric("fb-veo", "fb-fal", "throttled") == throttled + 1
        lines = [record.getMessage() for record in caplog.records if "fell back" in record.getMessage()]
        assert lines == [
            f"create of {first.json()['id']} (model {VEO}) fell back past fb-veo (rate_limited); "
            f"sent to profile fb-fal as model {FAL_VEO}",
            f"create of {second.json()['id']} (model {VEO}) fell back past fb-veo (throttled); "
            f"sent to profile fb-fal as model {FAL_VEO}",
        ]

    async def test_a_profile_whose_breaker_opened_is_skipped_without_a_call(self, make_stack: StackFactory) -> None:
        async with make_stack(veo={"breaker_failures": 2}) as stack:
            stack.upstreams.refusing.add(VEO_HOST)
            circuit_open = fallbacks_metric("fb-veo", "fb-fal", "circuit_open")
            unreachable = fallbacks_metric("fb-veo", "fb-fal", "unreachable")
            for _ in range(2):  # two failed creates open Veo direct's breaker
                assert (await stack.create()).status_code == 200
            attempts = stack.upstreams.posts[VEO_HOST]
            third = await stack.create()
            assert third.status_code == 200, third.text
            assert stack.upstreams.posts[VEO_HOST] == attempts
            assert (await stack.row(third.json()["id"])).upstream_profile == "fb-fal"
            assert fallbacks_metric("fb-veo", "fb-fal", "unreachable") == unreachable + 2
            assert fallbacks_metric("fb-veo", "fb-fal", "circuit_open") == circuit_open + 1

    async def test_an_ambiguous_failure_does_not_fall_back(self, stack: Stack) -> None:
        # A 500 after the create was sent: Veo may be rendering it. Sending it to fal could pay for it twice.
        await stack.faults(VEO_HOST, server_error_next=1, burst_routes=["predict_long_running"])
        veo_before, fal_before = await stack.sim_creates(VEO_HOST), await stack.sim_creates(FAL_HOST)
        response = await stack.create()
        assert response.status_code == 502, response.text
        assert response.headers["x-should-retry"] == "false"
        assert await stack.sim_creates(VEO_HOST) == veo_before + 1
        assert await stack.sim_creates(FAL_HOST) == fal_before
        [listed] = await stack.videos()
        assert listed["status"] == "failed" and listed["error"]["code"] == "upstream_submission_unknown"
        row = await stack.row(listed["id"])
        assert (row.upstream_profile, row.upstream_model) == ("fb-veo", None)


class TestWhatEachCandidateCanTake:
    async def test_a_request_its_own_profile_cannot_take_renders_on_a_fallback_that_can(self, stack: Stack) -> None:
        main_before = await stack.sim_creates(MAIN)
        unsupported = fallbacks_metric("default", "fb-veo", "unsupported")
        # OpenAI's contract has no 1920x1080; Veo renders it (at 8 s).
        created = await stack.create(model="sora-2", size="1920x1080", seconds="8")
        assert created.status_code == 200, created.text
        assert created.json()["model"] == "sora-2"
        row = await stack.row(created.json()["id"])
        assert (row.upstream_profile, row.upstream_model) == ("fb-veo", VEO)
        assert await stack.sim_creates(MAIN) == main_before
        assert fallbacks_metric("default", "fb-veo", "unsupported") == unsupported + 1
        assert (await stack.settle(created.json()["id"]))["status"] == "completed"

    async def test_a_fallback_that_cannot_take_the_request_is_not_tried(self, stack: Stack) -> None:
        stack.upstreams.refusing.add(MAIN)
        # 12 s: OpenAI's contract takes it, Veo does not. The default is down, so nothing can render it now.
        response = await stack.create(model="sora-2", seconds="12")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "upstream_unavailable"
        assert stack.upstreams.posts[VEO_HOST] == 0
        assert await stack.videos() == []
        # 4 s both take: Veo direct renders it.
        created = await stack.create(model="sora-2", seconds="4")
        assert created.status_code == 200, created.text
        assert (await stack.row(created.json()["id"])).upstream_profile == "fb-veo"

    async def test_when_no_candidate_can_take_it_the_400_is_the_first_candidates(self, stack: Stack) -> None:
        response = await stack.create(seconds="12")
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "seconds" and "'4', '6', '8'" in error["message"]
        assert f"(model '{VEO}')" in error["message"] and FAL_VEO not in error["message"]
        assert sum(stack.upstreams.posts.values()) == 0


class TestEveryCandidateUnavailable:
    async def test_the_caller_gets_the_first_candidates_429_and_nothing_is_kept(self, stack: Stack) -> None:
        attempts = stack.settings.upstreams["fb-veo"].create_attempts
        await stack.faults(VEO_HOST, rate_limit_next=attempts, burst_routes=["predict_long_running"])
        await stack.faults(FAL_HOST, rate_limit_next=attempts, burst_routes=["submit"])
        veo_before, fal_before = await stack.sim_creates(VEO_HOST), await stack.sim_creates(FAL_HOST)
        response = await stack.create()
        assert response.status_code == 429, response.text
        # Google's status (Veo direct's answer), not fal's.
        assert response.json()["error"]["code"] == "resource_exhausted"
        assert int(response.headers["retry-after"]) >= 1
        assert await stack.sim_creates(VEO_HOST) == veo_before + attempts
        assert await stack.sim_creates(FAL_HOST) == fal_before + attempts
        assert await stack.videos() == []

    async def test_while_every_candidate_is_paused_the_first_ones_pause_is_answered_at_once(
        self, make_stack: StackFactory
    ) -> None:
        async with make_stack(veo={"breaker_failures": 1}, fal={"breaker_failures": 1}) as stack:
            stack.upstreams.refusing.update({VEO_HOST, FAL_HOST})
            refused = await stack.create()
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "upstream_unavailable"
            attempts = dict(stack.upstreams.posts)
            paused = await stack.create()
            assert paused.status_code == 503, paused.text
            assert paused.json()["error"]["code"] == "upstream_circuit_open"
            assert int(paused.headers["retry-after"]) >= 1
            assert dict(stack.upstreams.posts) == attempts
            assert await stack.videos() == []


class TestAdmissionControlledCandidates:
    async def test_a_full_line_moves_the_create_on(self, make_stack: StackFactory) -> None:
        async with make_stack(veo={"max_concurrent": 1, "max_backlog": 1}) as stack:
            waiting = await stack.create(prompt="first in line")
            assert waiting.status_code == 200, waiting.text
            assert (await stack.row(waiting.json()["id"])).upstream_profile == "fb-veo"
            backlog_full = fallbacks_metric("fb-veo", "fb-fal", "backlog_full")
            created = await stack.create(prompt="the line is full")
            assert created.status_code == 200, created.text
            row = await stack.row(created.json()["id"])
            assert (row.upstream_profile, row.upstream_model) == ("fb-fal", FAL_VEO)
            assert row.upstream_id is not None  # sent at once: fal has no limits here
            assert fallbacks_metric("fb-veo", "fb-fal", "backlog_full") == backlog_full + 1
            # Never sent: deleted, nothing is left waiting in the shared database.
            assert (await stack.api.delete(f"/v1/videos/{waiting.json()['id']}")).status_code == 200

    async def test_a_create_waiting_on_a_fallback_is_sent_under_the_fallbacks_model(
        self, make_stack: StackFactory
    ) -> None:
        # A rate limit only (other tests' renders on `fb-fal`, still in flight in the shared database, would fill a
        # concurrency limit and hold this one back).
        async with make_stack(fal={"max_rpm": 1000}) as stack:
            stack.upstreams.refusing.add(VEO_HOST)
            created = await stack.create()
            assert created.status_code == 200, created.text
            video_id = created.json()["id"]
            row = await stack.row(video_id)
            assert (row.upstream_profile, row.upstream_model, row.submitted_at) == ("fb-fal", FAL_VEO, None)
            fal_before = await stack.sim_creates(FAL_HOST)
            await run_job(stack.context, await claim_submit(stack, video_id))
            row = await stack.row(video_id)
            # fal accepted it: the job named `fal-ai/veo3.1` (the adapter refuses a Gemini model id outright).
            assert row.upstream_id is not None and row.upstream_id.startswith(FAL_VEO + ":")
            assert await stack.sim_creates(FAL_HOST) == fal_before + 1
            assert (await stack.settle(video_id))["status"] == "completed"


async def claim_submit(stack: Stack, video_id: str) -> ClaimedJob:
    """What `queue.claim` does, to this video's submit job only (a claim would take other tests' jobs too)."""
    async with stack.database.sessionmaker.begin() as session:
        job = (
            await session.execute(
                update(ArchiveJob)
                .where(ArchiveJob.video_id == video_id, ArchiveJob.kind == "submit", ArchiveJob.state == "queued")
                .values(
                    state="running",
                    attempts=ArchiveJob.attempts + 1,
                    lease_token=uuid.uuid4(),
                    lease_until=func.now() + timedelta(seconds=stack.settings.worker.lease_seconds),
                    worker_id="fallbacks-test",
                )
                .returning(ArchiveJob)
            )
        ).scalar_one()
        assert job.lease_token is not None
        return ClaimedJob(
            id=job.id,
            kind=JobKind(job.kind),
            video_id=job.video_id,
            variant=None,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            deadline=None,
            lease_token=job.lease_token,
        )


class TestACutOffCreate:
    async def test_is_found_upstream_under_the_model_the_fallback_sent(self, stack: Stack) -> None:
        """A create to a fallback whose answer was lost (the process died): upstream lists it under the
        fallback's model id, so that is what the reconciler's search must compare."""
        async with stack.admin(ALT_HOST) as alt:
            fields = {"prompt": "lost in transit", "model": ALT_MODEL, "seconds": "4", "size": "1280x720"}
            render = await alt.post("/v1/videos", files={name: (None, value) for name, value in fields.items()})
            assert render.status_code == 200, render.text
        caller = (await stack.create(model="sora-2")).json()
        caller_id = (await stack.row(caller["id"])).caller_id
        video_id = f"video_{uuid.uuid4().hex}"
        await make_video(
            stack.database,
            video_id=video_id,
            caller=caller_id,
            status="queued",
            upstream_id=None,
            profile="fb-alt",
            model="sora-2-pro",
            upstream_model=ALT_MODEL,
            size="1280x720",
            prompt="lost in transit",
            submitted_at=datetime.now(UTC) - timedelta(seconds=5),
        )
        async with stack.database.sessionmaker.begin() as session:
            cut_off = await session.get(Video, video_id)
            assert cut_off is not None
            outcome = await resolve_cut_off_creates(
                session, videos=[cut_off], upstreams=stack.context.upstreams, settings=stack.settings
            )
        assert (outcome.adopted, outcome.settled) == (1, 0)
        adopted = await stack.row(video_id)
        assert adopted.upstream_id == render.json()["id"] and adopted.model == "sora-2-pro"


class TestWhatTheOperatorAndTheCallerSee:
    async def test_usage_breaks_renders_and_spend_down_per_provider(self, stack: Stack) -> None:
        direct = await stack.create()
        stack.upstreams.refusing.add(VEO_HOST)
        fallen_back = await stack.create()
        assert direct.status_code == fallen_back.status_code == 200
        usage = (await stack.api.get("/v1/usage")).json()
        # The existing fields, per day and model: the caller's model, whichever provider rendered it.
        assert [(bucket["model"], bucket["renders"]) for bucket in usage["data"]] == [(VEO, 2)]
        assert usage["totals"]["renders"] == 2
        providers = [
            (line["object"], line["profile"], line["kind"], line["renders"], line["seconds"])
            for line in usage["providers"]
        ]
        assert providers == [("usage.provider", "fb-fal", "fal", 1, 4), ("usage.provider", "fb-veo", "gemini", 1, 4)]
        # Priced at the caller's model: Veo is not in the price table, so the highest price ($0.30/s).
        assert [line["cost_usd"] for line in usage["providers"]] == [1.2, 1.2]
        assert sum(line["cost_usd"] for line in usage["providers"]) == usage["totals"]["cost_usd"]

    async def test_a_remix_refusal_names_the_callers_model(self, stack: Stack) -> None:
        stack.upstreams.refusing.add(VEO_HOST)
        video = (await stack.create()).json()
        response = await stack.api.post(f"/v1/videos/{video['id']}/remix", json={"prompt": "again"})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("unsupported_by_provider", "video_id")
        assert f"Model '{VEO}'" in error["message"] and FAL_VEO not in error["message"]

    async def test_the_console_shows_the_provider_of_each_render(self, stack: Stack) -> None:
        direct = (await stack.create()).json()
        stack.upstreams.refusing.add(VEO_HOST)
        fallen_back = (await stack.create()).json()
        caller_id = (await stack.row(direct["id"])).caller_id
        # https, as a browser needs for the console's Secure cookie.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stack.app), base_url="https://console.test"
        ) as browser:
            signed_in = await browser.post("/console/login", data={"admin_key": ADMIN_KEY, "next": "/console/videos"})
            assert signed_in.status_code == 303, signed_in.text
            page = (await browser.get(f"/console/videos/{fallen_back['id']}")).text
            assert f"profile fb-fal (fal), as model {FAL_VEO}</dd>" in page
            assert f"<dd>{VEO}</dd>" in page  # the model the caller asked for
            page = (await browser.get(f"/console/videos/{direct['id']}")).text
            assert "profile fb-veo (gemini)</dd>" in page
            rows = (await browser.get("/console/videos/rows", params={"caller": str(caller_id)})).text
        cells = {
            video_id: rows.split(f'data-video-id="{video_id}"')[1].split("</tr>")[0]
            for video_id in (direct["id"], fallen_back["id"])
        }
        assert (
            'fb-fal <span class="muted">(fal)</span> <span class="muted">as fal-ai/veo3.1</span>'
            in cells[fallen_back["id"]]
        )
        assert 'fb-veo <span class="muted">(gemini)</span></td>' in cells[direct["id"]]


class TestFalWebhooksOfAFallbackRender:
    async def test_the_fallback_profiles_receiver_finds_the_video_by_the_fallbacks_model(
        self, database_url: str, s3_settings: S3Settings, new_caller_key: NewCaller, database: Database
    ) -> None:
        """fal's webhook names the request, not the endpoint; the receiver looks the video up under each app its
        profile renders. `fb-fal` lists no models: only the fallback tells it about `fal-ai/veo3.1`."""
        to_gateway = Deferred()
        simulator = create_fal_simulator_app(
            SimulatorSettings(api_key=KEYS[FAL_HOST], queue_seconds=0.1, render_seconds=0.3, fps=2),
            webhook_transport=to_gateway,
        )
        # The receiver fetches fal's key set over HTTP: the simulator listens on a loopback port.
        async with served(simulator) as simulator_url:
            settings = make_settings(database_url).model_copy(
                update={
                    "s3": s3_settings,
                    "upstreams": {
                        # Nothing listens on port 1: every connection is refused.
                        "fb-veo": UpstreamProfile(
                            kind="gemini", base_url="http://127.0.0.1:1", models=[VEO], sends_webhooks=False
                        ),
                        "fb-fal": UpstreamProfile(
                            kind="fal",
                            base_url=simulator_url,
                            api_key=KEYS[FAL_HOST],
                            webhook_url="http://gateway.test/webhooks/fb-fal",
                            webhook_jwks_url=f"{simulator_url}/.well-known/jwks.json",
                            retry_base_seconds=0.01,
                            retry_max_seconds=0.05,
                        ),
                    },
                    "fallbacks": {VEO: [FallbackTarget(profile="fb-fal", model=FAL_VEO)]},
                }
            )
            app = create_app(settings)
            to_gateway.target = httpx.ASGITransport(app=app)
            async with app.router.lifespan_context(app), gateway_client(app, await new_caller_key()) as api:
                fields = {"prompt": "a heron", "model": VEO, "seconds": "4", "size": "1280x720"}
                created = await api.post("/v1/videos", files={name: (None, value) for name, value in fields.items()})
                assert created.status_code == 200, created.text
                video_id = created.json()["id"]
                async with database.sessionmaker() as session:
                    row = await session.get(Video, video_id)
                    assert row is not None and row.upstream_profile == "fb-fal" and row.upstream_id is not None
                request_id = row.upstream_id.split(":", 1)[1]
                deadline = time.monotonic() + 15
                while True:
                    async with database.sessionmaker() as session:
                        statement = select(WebhookEvent).where(WebhookEvent.webhook_id == f"{request_id}:OK")
                        event = (await session.execute(statement)).scalar_one_or_none()
                    if event is not None:
                        break
                    assert time.monotonic() < deadline, "fal's webhook was not recorded"
                    await asyncio.sleep(0.05)
                # Nothing of ours left in flight for later tests' reconcilers (the database is shared).
                assert (await api.delete(f"/v1/videos/{video_id}")).status_code == 200
        assert (event.upstream_profile, event.outcome, event.video_id) == ("fb-fal", "enqueued", video_id)
