"""Admission control in process: facade → queue → worker → simulator (with the provider's limits) → S3.

A profile with `max_rpm` / `max_concurrent` accepts every create as `queued` and the worker sends it when the
profile has room, in arrival order; the simulator enforces the same limits, so a 429 it answers (`rate_limited`
in its stats) would be a create we sent past them. Each test has a profile of its own (the videos of the
run's other tests share the database), driven by an in-process worker and reconciler.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import func, select, update

from app.archive import reconciler
from app.archive.jobs import JobContext, run_job
from app.archive.queue import ClaimedJob
from app.archive.storage import ArchiveStorage
from app.archive.worker import Worker
from app.core.config import LimitSettings, S3Settings, SimulatorSettings, UpstreamProfile
from app.core.db import Database
from app.main import create_app
from app.models import ArchiveJob, Asset, CallbackDelivery, Caller, JobKind, Video, VideoInput
from app.simulator import create_simulator_app
from app.simulator.errors import SimulatorError
from app.simulator.runtime import Simulator
from app.upstream.router import UpstreamRouter
from tests.support.factories import make_caller
from tests.support.gateway import gateway_client
from tests.support.settings import make_settings
from tests.support.worker import worker_settings

SIM_KEY = "sim-key"
LIMITED_HOST = "limited.test"
MODEL = "sora-2"


class UpstreamFaults(httpx.AsyncBaseTransport):
    """The limited profile's simulator (host `limited.test`), with two failures of the paid create no simulator
    knob gives; any other host is the run's shared simulator, as the default profile's videos of the run's other
    tests know it (the reconciler of this stack syncs them too).

    `lose_next_answer`: the create reaches upstream and renders, but its answer never reaches us (what a
    worker killed mid-call sees). `reject_next`: upstream refuses the create with a 400. `before_next`: run
    this while the next create is on its way (something the caller does meanwhile).
    """

    def __init__(self, limited: httpx.AsyncBaseTransport, shared: httpx.AsyncBaseTransport) -> None:
        self.inner = limited
        self.shared = shared
        self.lose_next_answer = False
        self.reject_next = False
        self.before_next: Callable[[], Awaitable[None]] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != LIMITED_HOST:
            return await self.shared.handle_async_request(request)
        is_create = request.method == "POST" and request.url.path == "/v1/videos"
        if is_create and self.reject_next:
            self.reject_next = False
            body = {"error": {"message": "Prompt refused by policy.", "type": "invalid_request_error"}}
            body["error"] |= {"param": "prompt", "code": "prompt_refused"}
            return httpx.Response(400, json=body)
        if is_create and self.before_next is not None:
            meanwhile, self.before_next = self.before_next, None
            await meanwhile()
        response = await self.inner.handle_async_request(request)
        if is_create and self.lose_next_answer:
            self.lose_next_answer = False
            await response.aread()
            raise RuntimeError("the worker died while upstream was answering")
        return response


@dataclass
class Stack:
    settings: Any
    profile: str
    api: httpx.AsyncClient
    caller_id: uuid.UUID
    simulator_app: FastAPI
    database: Database
    context: JobContext
    transport: UpstreamFaults

    @property
    def simulator(self) -> Simulator:
        simulator: Simulator = self.simulator_app.state.simulator
        return simulator

    def stats(self) -> dict[str, Any]:
        return self.simulator.stats.as_json()

    def set_faults(self, **knobs: Any) -> None:
        self.simulator.faults = type(self.simulator.faults).model_validate(knobs)

    def worker(self) -> Worker:
        return Worker(self.context, worker_id=f"admission-{self.profile}")

    async def create(self, prompt: str = "a kite", **fields: Any) -> httpx.Response:
        return await self.api.post(
            "/v1/videos", files={"prompt": (None, prompt), **{k: (None, v) for k, v in fields.items()}}
        )

    async def videos(self, ids: list[str] | None = None) -> list[Video]:
        async with self.database.sessionmaker() as session:
            statement = select(Video).where(Video.upstream_profile == self.profile).order_by(Video.seq)
            if ids is not None:
                statement = statement.where(Video.id.in_(ids))
            return list((await session.execute(statement)).scalars().all())

    async def video(self, video_id: str) -> Video:
        [video] = await self.videos([video_id])
        return video

    async def submit_jobs(self, video_id: str) -> list[ArchiveJob]:
        async with self.database.sessionmaker() as session:
            statement = (
                select(ArchiveJob)
                .where(ArchiveJob.video_id == video_id, ArchiveJob.kind == "submit")
                .order_by(ArchiveJob.id)
            )
            return list((await session.execute(statement)).scalars().all())

    async def claim_submit(self, video_id: str) -> ClaimedJob:
        """What `queue.claim` does, to this video's submit job only (a claim would take other tests' jobs too)."""
        async with self.database.sessionmaker.begin() as session:
            job = (
                await session.execute(
                    update(ArchiveJob)
                    .where(ArchiveJob.video_id == video_id, ArchiveJob.kind == "submit", ArchiveJob.state == "queued")
                    .values(
                        state="running",
                        attempts=ArchiveJob.attempts + 1,
                        lease_token=uuid.uuid4(),
                        lease_until=func.now() + timedelta(seconds=self.settings.worker.lease_seconds),
                        worker_id="doomed",
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

    async def archived(self, ids: list[str]) -> int:
        async with self.database.sessionmaker() as session:
            statement = select(func.count()).where(Asset.video_id.in_(ids), Asset.state == "archived")
            return int((await session.execute(statement)).scalar_one())

    async def drive(self, done: Callable[[], Awaitable[bool]], *, timeout: float = 90) -> None:
        """Run a worker as deployed (claims, and the reconciler every 0.2 s noticing finished renders) until
        `done()`."""
        worker = self.worker()
        running = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + timeout
            while not await done():
                assert time.monotonic() < deadline, "the admission stack did not get there in time"
                assert not running.done(), "the worker stopped"
                await asyncio.sleep(0.1)
        finally:
            worker.request_stop()
            await running


StackFactory = Callable[..., AbstractAsyncContextManager["Stack"]]


@pytest.fixture
def admission_stack(
    database_url: str, s3_settings: S3Settings, database: Database, simulator_app: FastAPI
) -> StackFactory:
    """`async with admission_stack(max_rpm=5, rate_window_seconds=2, sim={"rate_limit_rpm": 5}) as stack:`."""

    shared_simulator = simulator_app

    @asynccontextmanager
    async def build(*, sim: dict[str, Any] | None = None, **limits: Any) -> AsyncIterator[Stack]:
        simulator_app = create_simulator_app(
            SimulatorSettings(
                api_key=SIM_KEY,
                queue_seconds=0.0,
                render_seconds=0.3,
                fps=2,
                synthetic_asset_bytes=64 * 1024,
                **(sim or {}),
            )
        )
        profile = f"limited-{secrets.token_hex(4)}"
        base = make_settings(database_url)
        settings = base.model_copy(
            update={
                "s3": s3_settings,
                # No integrity audit: it would check the run's other archived objects too.
                "worker": worker_settings(audit_batch_size=0),
                # The caller's own limits are not what these tests are about (one test sets its own).
                "limits": LimitSettings(max_concurrent_renders=1000, budget_usd_per_period=10_000),
                "upstreams": {
                    profile: UpstreamProfile(
                        base_url=f"http://{LIMITED_HOST}/v1",
                        api_key=SIM_KEY,
                        models=[MODEL],
                        sends_webhooks=False,
                        retry_base_seconds=0.01,
                        retry_max_seconds=0.05,
                        **limits,
                    )
                },
            }
        )
        transport = UpstreamFaults(httpx.ASGITransport(app=simulator_app), httpx.ASGITransport(app=shared_simulator))
        app = create_app(settings, upstream_transport=transport)
        upstreams = UpstreamRouter(settings, transport=transport)
        storage = ArchiveStorage(s3_settings)
        await storage.ensure_bucket()
        caller = await make_caller(database)
        context = JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage)
        async with (
            simulator_app.router.lifespan_context(simulator_app),
            app.router.lifespan_context(app),
            gateway_client(app, caller.key) as api,
        ):
            yield Stack(settings, profile, api, caller.id, simulator_app, database, context, transport)
            # What a test leaves waiting must not be picked up by another test's worker.
            async with database.sessionmaker.begin() as session:
                mine = select(Video.id).where(Video.upstream_profile == profile)
                await session.execute(
                    update(ArchiveJob)
                    .where(ArchiveJob.video_id.in_(mine), ArchiveJob.state.in_(("queued", "running")))
                    .values(state="succeeded", lease_token=None, last_error="test over")
                )
        await upstreams.aclose()
        storage.close()

    return build


def assert_openai_error(response: httpx.Response, status: int, code: str, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert (body["error"]["code"], body["error"]["type"]) == (code, type_), body
    error: dict[str, Any] = body["error"]
    return error


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


class TestTheSimulatorsLimits:
    """The simulator's limits are real (else its `rate_limited` staying 0 would prove nothing)."""

    async def test_past_its_rpm_a_create_is_429_in_openais_shape_and_counted(self) -> None:
        app = create_simulator_app(
            SimulatorSettings(api_key=SIM_KEY, rate_limit_rpm=2, rate_limit_window_seconds=60, render_seconds=30)
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://sim",
                headers={"authorization": f"Bearer {SIM_KEY}"},
            ) as client,
        ):
            statuses = [(await client.post("/v1/videos", json={"prompt": f"p{n}"})).status_code for n in range(3)]
            assert statuses == [200, 200, 429]
            refused = await client.post("/v1/videos", json={"prompt": "p"})
            assert_openai_error(refused, 429, "rate_limit_exceeded", "requests")
            assert int(refused.headers["retry-after"]) >= 1
            # Reads are not what the limit counts.
            assert (await client.get("/v1/videos")).status_code == 200
            assert (await client.get("/_sim/stats")).json()["rate_limited"] == 2
            # Runtime config: lifting the limit lets the next create through.
            config = (await client.patch("/_sim/config", json={"rate_limit_rpm": None})).json()
            assert config["rate_limit_rpm"] is None
            assert (await client.post("/v1/videos", json={"prompt": "p"})).status_code == 200

    async def test_past_its_concurrency_a_create_is_429_until_a_render_ends(self) -> None:
        app = create_simulator_app(
            SimulatorSettings(api_key=SIM_KEY, queue_seconds=0, render_seconds=30, fps=2, synthetic_asset_bytes=1024)
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://sim",
                headers={"authorization": f"Bearer {SIM_KEY}"},
            ) as client,
        ):
            await client.patch("/_sim/config", json={"max_concurrent_renders": 1})
            first = (await client.post("/v1/videos", json={"prompt": "one"})).json()
            assert_openai_error(
                await client.post("/v1/videos", json={"prompt": "two"}), 429, "rate_limit_exceeded", "requests"
            )
            assert (await client.delete(f"/v1/videos/{first['id']}")).status_code == 200
            assert (await client.post("/v1/videos", json={"prompt": "two"})).status_code == 200
            assert (await client.get("/_sim/stats")).json()["rate_limited"] == 1


class TestAdmissionControl:
    async def test_thirty_creates_at_five_per_window_all_complete_in_order_without_a_provider_429(
        self, admission_stack: StackFactory
    ) -> None:
        window = 2.0
        async with admission_stack(
            max_rpm=5, rate_window_seconds=window, sim={"rate_limit_rpm": 5, "rate_limit_window_seconds": window}
        ) as stack:
            responses = await asyncio.gather(*(stack.create(f"kite {n}") for n in range(30)))
            assert [response.status_code for response in responses] == [200] * 30, [r.text for r in responses]
            assert {response.json()["status"] for response in responses} == {"queued"}
            ids = [response.json()["id"] for response in responses]
            # Accepted is not sent: nothing reached upstream before the worker ran.
            assert stack.stats()["create_requests"] == 0

            async def all_settled() -> bool:
                videos = await stack.videos(ids)
                completed = sum(video.status == "completed" for video in videos)
                return all(video.status.is_terminal for video in videos) and (
                    await stack.archived(ids) == 3 * completed
                )

            await stack.drive(all_settled, timeout=120)

            stats = stack.stats()
            assert stats["rate_limited"] == 0
            assert stats["create_requests"] == stats["videos_created"] == 30  # each sent once
            videos = await stack.videos(ids)  # in arrival (acceptance) order
            assert all(video.status == "completed" and video.submitted_at is not None for video in videos)
            sent = [video.submitted_at for video in videos if video.submitted_at is not None]
            assert sent == sorted(sent), "submitted out of arrival order"
            # Never a sixth create within one window, as we count it.
            gaps = [later - earlier for earlier, later in zip(sent, sent[5:], strict=False)]
            assert min(gaps) >= timedelta(seconds=window), min(gaps)
            body = (await stack.api.get(f"/v1/videos/{ids[-1]}")).json()
            assert body["status"] == "completed" and body["archive"]["video"]["state"] == "archived"
            async with stack.database.sessionmaker() as session:
                inputs = await session.execute(select(func.count()).where(VideoInput.video_id.in_(ids)))
                assert inputs.scalar_one() == 0

    async def test_max_concurrent_two_never_has_a_third_render_in_flight_upstream(
        self, admission_stack: StackFactory
    ) -> None:
        async with admission_stack(max_concurrent=2, sim={"max_concurrent_renders": 2}) as stack:
            ids = [(await stack.create(f"boat {n}")).json()["id"] for n in range(6)]
            most = 0
            sampling = True

            async def sample() -> None:
                nonlocal most
                while sampling:
                    most = max(most, len(stack.simulator.store.active()))
                    await asyncio.sleep(0.005)

            sampler = asyncio.create_task(sample())

            async def all_settled() -> bool:
                return all(video.status.is_terminal for video in await stack.videos(ids))

            try:
                await stack.drive(all_settled)
            finally:
                sampling = False
                await sampler
            assert stack.stats()["rate_limited"] == 0
            assert stack.stats()["create_requests"] == 6
            assert all(video.status == "completed" for video in await stack.videos(ids))
            assert most == 2

    async def test_a_full_backlog_is_429_with_retry_after_and_charges_nothing(
        self, admission_stack: StackFactory, database: Database
    ) -> None:
        async with admission_stack(max_rpm=1, rate_window_seconds=60, max_backlog=3) as stack:
            for n in range(3):
                assert (await stack.create(f"wait {n}")).status_code == 200
            before = (await stack.api.get("/v1/usage")).json()["current_period"]
            refused = await stack.create("one too many")
            error = assert_openai_error(refused, 429, "upstream_backlog_full", "rate_limit_error")
            assert "3" in error["message"] and "try again" in error["message"]
            # Three waiting at one create per 61 s (the window and its margin) drain in 183 s.
            assert refused.headers["retry-after"] == "183"
            assert (await stack.api.get("/v1/usage")).json()["current_period"] == before
            assert len(await stack.videos()) == 3
            assert stack.stats()["create_requests"] == 0

    async def test_a_waiting_video_deleted_before_submission_is_never_sent_nor_billed(
        self, admission_stack: StackFactory
    ) -> None:
        async with admission_stack(max_rpm=1, rate_window_seconds=60) as stack:
            spent_before = (await stack.api.get("/v1/usage")).json()["current_period"]["spent_usd"]
            video_id = (await stack.create("never mind")).json()["id"]
            async with stack.database.sessionmaker.begin() as session:
                await session.execute(
                    update(Video).where(Video.id == video_id).values(callback_url="https://hooks.example.com/v")
                )
            assert (await stack.api.delete(f"/v1/videos/{video_id}")).status_code == 200
            await stack.worker().run_until_idle()
            assert stack.stats()["create_requests"] == 0
            video = await stack.video(video_id)
            assert (video.status, video.error_code, video.submitted_at) == ("failed", "deleted_before_submission", None)
            [job] = await stack.submit_jobs(video_id)
            assert job.state == "succeeded" and "deleted" in (job.last_error or "")
            assert (await stack.api.get("/v1/usage")).json()["current_period"]["spent_usd"] == spent_before
            # The caller deleted it: nobody is told it failed.
            async with stack.database.sessionmaker() as session:
                events = await session.execute(
                    select(CallbackDelivery.event_type).where(CallbackDelivery.video_id == video_id)
                )
                assert list(events.scalars()) == []

    async def test_a_video_deleted_while_it_is_being_sent_is_deleted_upstream_too(
        self, admission_stack: StackFactory
    ) -> None:
        async with admission_stack(max_rpm=5, rate_window_seconds=60) as stack:
            video_id = (await stack.create("changed my mind")).json()["id"]

            async def delete() -> None:
                assert (await stack.api.delete(f"/v1/videos/{video_id}")).status_code == 200

            stack.transport.before_next = delete
            await stack.worker().run_until_idle()
            video = await stack.video(video_id)
            assert video.deleted_at is not None and video.upstream_id is not None
            assert stack.stats()["videos_created"] == 1
            assert stack.stats()["requests"]["delete_video"] == 1
            with pytest.raises(SimulatorError):  # gone upstream
                stack.simulator.store.get(video.upstream_id)

    async def test_a_submission_cut_off_mid_call_is_never_sent_again_and_is_adopted(
        self, admission_stack: StackFactory
    ) -> None:
        async with admission_stack(max_rpm=5, rate_window_seconds=60) as stack:
            video_id = (await stack.create(f"cut off {uuid.uuid4().hex}")).json()["id"]
            # The first run's create reaches upstream, and the worker dies before the answer is recorded.
            stack.transport.lose_next_answer = True
            job = await stack.claim_submit(video_id)
            with pytest.raises(RuntimeError):
                await run_job(stack.context, job)
            assert stack.stats()["videos_created"] == 1
            video = await stack.video(video_id)
            assert video.submitted_at is not None and video.upstream_id is None

            # Its lease lapses (the gate's heartbeat renewed it for `lease_seconds`: let that pass at once); another
            # worker takes the job over, and must not send it again.
            async with stack.database.sessionmaker.begin() as session:
                await session.execute(
                    update(ArchiveJob)
                    .where(ArchiveJob.id == job.id)
                    .values(lease_until=func.now() - timedelta(seconds=1))
                )
            worker = stack.worker()
            await worker.maintain()
            await worker.run_until_idle()
            assert stack.stats()["create_requests"] == 1
            [ran_twice] = await stack.submit_jobs(video_id)
            assert ran_twice.state == "succeeded" and "never sent twice" in (ran_twice.last_error or "")

            # The reconciler finds the render upstream (once `unsubmitted_after_seconds` has passed) and adopts it.
            async with stack.database.sessionmaker.begin() as session:
                age = timedelta(seconds=stack.settings.worker.unsubmitted_after_seconds + 5)
                await session.execute(
                    update(Video)
                    .where(Video.id == video_id)
                    .values(submitted_at=Video.submitted_at - age, created_at=Video.created_at - age)
                )
            assert (await reconciler.reconcile_once(stack.context)).submissions_adopted == 1

            async def archived() -> bool:
                return await stack.archived([video_id]) == 3

            await stack.drive(archived)
            assert stack.stats()["create_requests"] == 1

    async def test_a_provider_429_despite_our_limits_is_retried_later_and_completes(
        self, admission_stack: StackFactory
    ) -> None:
        async with admission_stack(max_rpm=5, rate_window_seconds=60) as stack:
            # Another tenant of the account used it up: three 429s exhaust the client's own retries.
            stack.set_faults(rate_limit_next=3, rate_limit_retry_after_seconds=1, burst_routes=["create_video"])
            video_id = (await stack.create("shared account")).json()["id"]

            async def archived() -> bool:
                return await stack.archived([video_id]) == 3

            await stack.drive(archived)
            assert stack.stats()["create_requests"] == 4 and stack.stats()["videos_created"] == 1
            [job] = await stack.submit_jobs(video_id)
            assert (job.state, job.attempts) == ("succeeded", 2)
            assert (await stack.video(video_id)).status == "completed"

    async def test_a_create_upstream_refuses_fails_with_its_reason_and_tells_the_caller(
        self, admission_stack: StackFactory
    ) -> None:
        async with admission_stack(max_rpm=5, rate_window_seconds=60) as stack:
            stack.transport.reject_next = True
            video_id = (await stack.create("refused")).json()["id"]
            async with stack.database.sessionmaker.begin() as session:
                # As a create naming an allow-listed callback_url would have stored it.
                await session.execute(
                    update(Video).where(Video.id == video_id).values(callback_url="https://hooks.example.com/v")
                )
            await stack.worker().run_until_idle()
            body = (await stack.api.get(f"/v1/videos/{video_id}")).json()
            assert body["status"] == "failed"
            assert body["error"] == {"code": "prompt_refused", "message": "Prompt refused by policy."}
            async with stack.database.sessionmaker() as session:
                events = await session.execute(
                    select(CallbackDelivery.event_type).where(CallbackDelivery.video_id == video_id)
                )
                assert list(events.scalars()) == ["video.failed"]

    async def test_an_ambiguous_upstream_failure_is_settled_as_unknown_never_resent(
        self, admission_stack: StackFactory
    ) -> None:
        async with admission_stack(max_rpm=5, rate_window_seconds=60) as stack:
            stack.set_faults(server_error_next=1, burst_routes=["create_video"])
            video_id = (await stack.create("answered 500")).json()["id"]
            async with stack.database.sessionmaker.begin() as session:
                await session.execute(
                    update(Video).where(Video.id == video_id).values(callback_url="https://hooks.example.com/v")
                )
            await stack.worker().run_until_idle()
            body = (await stack.api.get(f"/v1/videos/{video_id}")).json()
            assert (body["status"], body["error"]["code"]) == ("failed", "upstream_submission_unknown")
            assert stack.stats()["create_requests"] == 1
            async with stack.database.sessionmaker() as session:
                events = await session.execute(
                    select(CallbackDelivery.event_type).where(CallbackDelivery.video_id == video_id)
                )
                assert list(events.scalars()) == ["video.failed"]

    async def test_the_input_image_waits_with_the_video_and_reaches_upstream(
        self, admission_stack: StackFactory
    ) -> None:
        async with admission_stack(max_rpm=5, rate_window_seconds=60) as stack:
            image = png(720, 1280)
            response = await stack.api.post(
                "/v1/videos",
                files={"prompt": (None, "from a picture"), "input_reference": ("ref.png", image, "image/png")},
            )
            assert response.status_code == 200, response.text
            video_id = response.json()["id"]
            async with stack.database.sessionmaker() as session:
                stored = await session.get(VideoInput, video_id)
                assert stored is not None and stored.image == image and (stored.width, stored.height) == (720, 1280)
            await stack.worker().run_until_idle()
            video = await stack.video(video_id)
            assert video.upstream_id is not None
            assert stack.simulator.store.get(video.upstream_id).reference_image == image
            async with stack.database.sessionmaker() as session:
                assert await session.get(VideoInput, video_id) is None

    async def test_a_waiting_video_whose_job_was_lost_gets_one_from_the_reconciler(
        self, admission_stack: StackFactory
    ) -> None:
        async with admission_stack(max_rpm=5, rate_window_seconds=60) as stack:
            video_id = (await stack.create("orphaned")).json()["id"]
            async with stack.database.sessionmaker.begin() as session:
                await session.execute(
                    update(ArchiveJob).where(ArchiveJob.video_id == video_id).values(state="dead", lease_token=None)
                )

            # Counted for this video only: the database is shared with other tests' waiting videos.
            async def live_submit_jobs() -> int:
                async with stack.database.sessionmaker() as session:
                    statement = select(func.count()).where(
                        ArchiveJob.video_id == video_id,
                        ArchiveJob.kind == JobKind.SUBMIT.value,
                        ArchiveJob.state.in_(("queued", "running")),
                    )
                    return int((await session.execute(statement)).scalar_one())

            assert await live_submit_jobs() == 0
            assert (await reconciler.reconcile_once(stack.context)).submits_queued >= 1
            assert await live_submit_jobs() == 1
            await reconciler.reconcile_once(stack.context)
            assert await live_submit_jobs() == 1  # once: a second pass queues no other
            await stack.worker().run_until_idle()
            assert (await stack.video(video_id)).upstream_id is not None

    async def test_the_callers_own_limits_still_refuse_at_acceptance(self, admission_stack: StackFactory) -> None:
        async with admission_stack(max_rpm=1, rate_window_seconds=60) as stack:
            async with stack.database.sessionmaker.begin() as session:
                await session.execute(
                    update(Caller).where(Caller.id == stack.caller_id).values(max_concurrent_renders=1)
                )
            assert (await stack.create("first")).status_code == 200
            # A waiting video is a render in flight for its caller's limits, as on the direct path.
            refused = await stack.create("second")
            assert_openai_error(refused, 429, "concurrent_renders_exceeded", "rate_limit_error")
            assert len(await stack.videos()) == 1

    async def test_remix_stays_on_the_direct_path(self, admission_stack: StackFactory) -> None:
        async with admission_stack(max_rpm=5, rate_window_seconds=60) as stack:
            source = (await stack.create("source")).json()["id"]

            async def completed() -> bool:
                return (await stack.video(source)).status == "completed"

            await stack.drive(completed)
            before = stack.stats()["create_requests"]
            remix = await stack.api.post(f"/v1/videos/{source}/remix", json={"prompt": "at dusk"})
            assert remix.status_code == 200, remix.text
            remixed = await stack.video(remix.json()["id"])
            assert remixed.upstream_id is not None and remixed.submitted_at is not None
            assert stack.stats()["requests"]["remix_video"] == 1 and stack.stats()["create_requests"] == before
