"""Re-archiving never takes a served copy out of service, and the integrity audit finds what S3 lost.

In process, like test_archive_flow: the gateway app (console on), the simulator as upstream, real Postgres and
SeaweedFS. Objects are deleted or corrupted behind the gateway's back with a plain S3 client.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import func, select, update

from app.archive import audit, reconciler
from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage, make_client
from app.archive.worker import Worker
from app.core.config import S3Settings
from app.core.db import Database
from app.main import create_app
from app.models import Asset, Variant
from app.upstream.router import UpstreamRouter
from tests.integration.worker.test_archive_flow import (
    assets,
    create_video,
    enqueue_sync,
    jobs,
    upstream_sha256,
    wait_upstream_completed,
)
from tests.support.console import ADMIN_KEY, browser, csrf_token, sign_in
from tests.support.gateway import NewCaller, gateway_client
from tests.support.json_logs import capture_json_logs, json_records
from tests.support.settings import make_settings
from tests.support.worker import ArchiveStack, worker_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

VARIANTS = ("video", "thumbnail", "spritesheet")


@dataclass
class ConsoleStack(ArchiveStack):
    operator: httpx.AsyncClient


@pytest.fixture
async def stack(
    database_url: str,
    simulator_app: FastAPI,
    s3_settings: S3Settings,
    new_caller_key: NewCaller,
    database: Database,
) -> AsyncIterator[ConsoleStack]:
    """The worker tests' stack, with the operator console switched on and an operator signed in."""
    settings = make_settings(database_url).model_copy(
        update={"s3": s3_settings, "worker": worker_settings(), "admin_api_key": SecretStr(ADMIN_KEY)}
    )
    upstream_transport = httpx.ASGITransport(app=simulator_app)
    app = create_app(settings, upstream_transport=upstream_transport)
    upstreams = UpstreamRouter(settings, transport=upstream_transport)
    storage = ArchiveStorage(s3_settings)
    await storage.ensure_bucket()
    simulator = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=simulator_app),
        base_url="http://upstream.test",
        headers={"authorization": "Bearer sim-key"},
    )
    async with (
        app.router.lifespan_context(app),
        gateway_client(app, await new_caller_key()) as api,
        browser(app) as operator,
    ):
        assert (await sign_in(operator)).status_code == 303
        context = JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage)
        yield ConsoleStack(settings, api, simulator, database, storage, context, operator)
    await simulator.put("/_sim/faults", json={})
    await simulator.aclose()
    await upstreams.aclose()
    storage.close()


async def archived_video(stack: ArchiveStack) -> tuple[str, dict[str, str]]:
    """A video rendered and archived; returns its id and the recorded SHA-256 per variant."""
    video_id = await create_video(stack)
    await wait_upstream_completed(stack, video_id)
    await enqueue_sync(stack, video_id)
    await stack.worker().run_until_idle()
    rows = await assets(stack, video_id)
    assert {variant: row.state for variant, row in rows.items()} == dict.fromkeys(VARIANTS, "archived")
    return video_id, {variant: str(row.sha256) for variant, row in rows.items()}


async def served(stack: ArchiveStack, video_id: str) -> dict[str, str]:
    """SHA-256 of what the content endpoint serves per variant (every one must answer 200)."""
    found = {}
    for variant in VARIANTS:
        response = await stack.api.get(f"/v1/videos/{video_id}/content", params={"variant": variant})
        assert response.status_code == 200, (variant, response.status_code, response.text[:200])
        found[variant] = hashlib.sha256(response.content).hexdigest()
    return found


async def listed(stack: ArchiveStack, video_id: str) -> list[str]:
    response = await stack.api.get(f"/v1/videos/{video_id}/assets")
    assert response.status_code == 200, response.text
    return [link["variant"] for link in response.json()["data"]]


async def rearchive(stack: ConsoleStack, video_id: str) -> str:
    """The console's Re-archive button; returns the notice it redirects with."""
    token = await csrf_token(stack.operator, f"/console/videos/{video_id}")
    response = await stack.operator.post(f"/console/videos/{video_id}/rearchive", data={"csrf_token": token})
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"/console/videos/{video_id}?notice=")
    return location.rpartition("=")[2]


async def expire_upstream(stack: ArchiveStack, video_id: str) -> None:
    upstream_id = await stack.upstream_id(video_id)
    assert (await stack.simulator.post(f"/_sim/videos/{upstream_id}/expire")).status_code == 200


async def live_downloads(stack: ArchiveStack, video_id: str) -> list[str]:
    return sorted(
        str(job.variant)
        for job in await jobs(stack, video_id)
        if job.kind == "download" and job.state in ("queued", "running")
    )


def raw_s3(stack: ArchiveStack) -> S3Client:
    """A plain S3 client: what deletes or corrupts an object behind the gateway's back."""
    return make_client(stack.settings.s3)


def key_of(stack: ArchiveStack, video_id: str, variant: str) -> str:
    return stack.storage.key_for(video_id, Variant(variant))


async def only_due(stack: ArchiveStack, database: Database, video_id: str, *, batch: int) -> JobContext:
    """A context whose audit runs every 0.1 s, `batch` objects at a time, with only this video's objects due
    (every other archived object in the shared test database counts as just checked)."""
    async with database.sessionmaker.begin() as session:
        await session.execute(update(Asset).where(Asset.video_id != video_id).values(audited_at=func.now()))
        await session.execute(update(Asset).where(Asset.video_id == video_id).values(audited_at=None))
    worker = stack.settings.worker.model_copy(
        update={"audit_interval_seconds": 0.1, "audit_batch_size": batch, "audit_recheck_seconds": 3600}
    )
    settings = stack.settings.model_copy(update={"worker": worker})
    return JobContext(settings=settings, database=database, upstreams=stack.context.upstreams, storage=stack.storage)


def lost_count(variant: str) -> float:
    return REGISTRY.get_sample_value("vg_assets_lost_total", {"variant": variant}) or 0.0


# ----- defect 1: a re-archive never makes a served asset unservable --------------------------------------------


class TestReplay:
    async def test_after_upstream_forgot_the_video_nothing_changes_and_all_three_stay_served(
        self, stack: ConsoleStack
    ) -> None:
        video_id, recorded = await archived_video(stack)
        await expire_upstream(stack, video_id)

        assert await rearchive(stack, video_id) == "upstream_gone"
        page = await stack.operator.get(f"/console/videos/{video_id}?notice=upstream_gone")
        assert "no longer has this video" in page.text
        assert await live_downloads(stack, video_id) == []  # nothing queued, nothing discarded
        await stack.worker().run_until_idle()

        rows = await assets(stack, video_id)
        assert {variant: row.state for variant, row in rows.items()} == dict.fromkeys(VARIANTS, "archived")
        assert {variant: row.sha256 for variant, row in rows.items()} == recorded
        assert await served(stack, video_id) == recorded
        assert await listed(stack, video_id) == list(VARIANTS)

    async def test_while_upstream_has_it_the_copies_are_served_during_and_after_a_failed_redownload(
        self, stack: ConsoleStack
    ) -> None:
        video_id, recorded = await archived_video(stack)

        assert await rearchive(stack, video_id) == "rearchived"
        assert await live_downloads(stack, video_id) == sorted(VARIANTS)
        # Pending re-downloads take nothing out of service.
        rows = await assets(stack, video_id)
        assert {variant: row.state for variant, row in rows.items()} == dict.fromkeys(VARIANTS, "archived")
        assert await served(stack, video_id) == recorded
        assert await listed(stack, video_id) == list(VARIANTS)

        # Upstream now answers garbage: every re-download fails, and the archived copies stay.
        await stack.set_faults(content_html_error=True)
        await stack.worker().run_until_idle()
        assert await live_downloads(stack, video_id) == []
        rows = await assets(stack, video_id)
        assert {variant: row.state for variant, row in rows.items()} == dict.fromkeys(VARIANTS, "archived")
        assert {variant: row.sha256 for variant, row in rows.items()} == recorded
        assert all("re-download failed" in str(row.error) for row in rows.values())
        assert await served(stack, video_id) == recorded
        assert await listed(stack, video_id) == list(VARIANTS)

        # Healthy again: the re-download lands, same bytes, and the note is gone.
        await stack.set_faults()
        assert await rearchive(stack, video_id) == "rearchived"
        await stack.worker().run_until_idle()
        rows = await assets(stack, video_id)
        assert {variant: (row.state, row.sha256, row.error) for variant, row in rows.items()} == {
            variant: ("archived", recorded[variant], None) for variant in VARIANTS
        }
        assert await served(stack, video_id) == recorded

    async def test_a_failed_variant_is_downloaded_again(self, stack: ConsoleStack) -> None:
        video_id, recorded = await archived_video(stack)
        async with stack.database.sessionmaker.begin() as session:  # as an S3 outage would have left it
            await session.execute(
                update(Asset)
                .where(Asset.video_id == video_id, Asset.variant == "thumbnail")
                .values(state="failed", error="transfer failed")
            )
        assert await rearchive(stack, video_id) == "rearchived"
        assert (await assets(stack, video_id))["thumbnail"].state == "pending"
        await stack.worker().run_until_idle()
        rows = await assets(stack, video_id)
        assert {variant: (row.state, row.sha256) for variant, row in rows.items()} == {
            variant: ("archived", recorded[variant]) for variant in VARIANTS
        }


# ----- defect 4: the integrity audit -----------------------------------------------------------------------------


class TestAudit:
    async def test_an_intact_archive_passes(self, stack: ConsoleStack) -> None:
        video_id, _ = await archived_video(stack)
        report = await audit.audit_once(stack.context, limit=10, video_id=video_id, full_hash=True)
        assert report.checked == 3
        assert report.findings == []
        async with stack.database.sessionmaker() as session:
            stamped = (await session.execute(select(Asset.audited_at).where(Asset.video_id == video_id))).scalars()
            assert all(moment is not None for moment in stamped)

    async def test_a_deleted_object_is_found_and_re_downloaded_while_upstream_has_it(self, stack: ConsoleStack) -> None:
        video_id, recorded = await archived_video(stack)
        raw_s3(stack).delete_object(Bucket=stack.settings.s3.bucket, Key=key_of(stack, video_id, "video"))

        report = await audit.audit_once(stack.context, limit=10, video_id=video_id)
        [finding] = report.findings
        assert (finding.variant, finding.problem, finding.action) == ("video", "missing", "repair")
        rows = await assets(stack, video_id)
        assert rows["video"].state == "pending"  # no longer claimed to be archived
        assert await live_downloads(stack, video_id) == ["video"]

        await stack.worker().run_until_idle()
        rows = await assets(stack, video_id)
        assert {variant: (row.state, row.sha256) for variant, row in rows.items()} == {
            variant: ("archived", recorded[variant]) for variant in VARIANTS
        }
        assert await stack.storage.head(key_of(stack, video_id, "video")) is not None
        assert await served(stack, video_id) == recorded

    async def test_a_deleted_object_upstream_no_longer_has_is_lost_loudly_and_stays_lost(
        self, stack: ConsoleStack
    ) -> None:
        video_id, _ = await archived_video(stack)
        await expire_upstream(stack, video_id)
        raw_s3(stack).delete_object(Bucket=stack.settings.s3.bucket, Key=key_of(stack, video_id, "video"))
        before = lost_count("video")

        with capture_json_logs() as logs:
            report = await audit.audit_once(stack.context, limit=10, video_id=video_id)
        [finding] = report.findings
        assert (finding.variant, finding.problem, finding.action) == ("video", "missing", "lost")
        errors = [r for r in json_records(logs) if r["level"] == "error" and video_id in r["event"]]
        assert errors and "lost" in errors[0]["event"]
        assert lost_count("video") == before + 1

        rows = await assets(stack, video_id)
        assert rows["video"].state == "lost" and "missing" in str(rows["video"].error)
        assert (rows["thumbnail"].state, rows["spritesheet"].state) == ("archived", "archived")
        # The content path no longer finds an archived asset: a clean 4xx in OpenAI's shape, never a 500.
        response = await stack.api.get(f"/v1/videos/{video_id}/content")
        assert 400 <= response.status_code < 500 or response.status_code == 503, response.status_code
        assert "error" in response.json()
        assert await listed(stack, video_id) == ["thumbnail", "spritesheet"]
        retrieved = (await stack.api.get(f"/v1/videos/{video_id}")).json()
        assert retrieved["archive"]["video"]["state"] == "lost"

        # The console shows it apart, in the table and on the video's page.
        table = await stack.operator.get("/console/videos")
        row = next(line for line in table.text.split("<tr") if f'data-video-id="{video_id}"' in line)
        assert 'class="lost-badge"' in row and "asset-lost" in row
        page = await stack.operator.get(f"/console/videos/{video_id}")
        assert 'class="lost-badge"' in page.text and "video lost" in page.text

        # Nothing loops on it: the reconciler queues nothing, a second audit does not look at it again.
        downloads = len(await jobs(stack, video_id))
        for _ in range(2):
            await reconciler.reconcile_once(stack.context)
        assert len(await jobs(stack, video_id)) == downloads
        again = await audit.audit_once(stack.context, limit=10, video_id=video_id)
        assert again.checked == 2 and again.findings == []
        assert lost_count("video") == before + 1
        assert (await assets(stack, video_id))["video"].state == "lost"

    async def test_a_size_mismatch_is_found_and_repaired(self, stack: ConsoleStack) -> None:
        video_id, recorded = await archived_video(stack)
        key = key_of(stack, video_id, "spritesheet")
        client = raw_s3(stack)
        original = client.get_object(Bucket=stack.settings.s3.bucket, Key=key)["Body"].read()
        client.put_object(Bucket=stack.settings.s3.bucket, Key=key, Body=original[: len(original) // 2])

        report = await audit.audit_once(stack.context, limit=10, video_id=video_id)
        [finding] = report.findings
        assert (finding.variant, finding.problem, finding.action) == ("spritesheet", "size_mismatch", "repair")
        await stack.worker().run_until_idle()
        rows = await assets(stack, video_id)
        assert (rows["spritesheet"].state, rows["spritesheet"].sha256) == ("archived", recorded["spritesheet"])
        assert await served(stack, video_id) == recorded

    async def test_only_a_full_read_finds_a_corrupted_object_of_the_right_size(self, stack: ConsoleStack) -> None:
        video_id, recorded = await archived_video(stack)
        key = key_of(stack, video_id, "video")
        client = raw_s3(stack)
        original = client.get_object(Bucket=stack.settings.s3.bucket, Key=key)["Body"].read()
        middle = len(original) // 2
        corrupted = original[:middle] + bytes(byte ^ 0xFF for byte in original[middle : middle + 16])
        corrupted += original[middle + 16 :]
        client.put_object(Bucket=stack.settings.s3.bucket, Key=key, Body=corrupted)

        assert (await audit.audit_once(stack.context, limit=10, video_id=video_id)).findings == []
        report = await audit.audit_once(stack.context, limit=10, video_id=video_id, full_hash=True)
        [finding] = report.findings
        assert (finding.variant, finding.problem, finding.action) == ("video", "checksum_mismatch", "repair")
        await stack.worker().run_until_idle()
        rows = await assets(stack, video_id)
        assert (rows["video"].state, rows["video"].sha256) == ("archived", recorded["video"])
        assert recorded["video"] == await upstream_sha256(stack, video_id, "video")
        assert (await served(stack, video_id))["video"] == recorded["video"]

    async def test_a_dry_run_reports_and_changes_nothing(self, stack: ConsoleStack) -> None:
        video_id, _ = await archived_video(stack)
        raw_s3(stack).delete_object(Bucket=stack.settings.s3.bucket, Key=key_of(stack, video_id, "thumbnail"))
        report = await audit.audit_once(stack.context, limit=10, video_id=video_id, dry_run=True)
        [finding] = report.findings
        assert (finding.variant, finding.problem, finding.action) == ("thumbnail", "missing", "would_repair")
        assert (await assets(stack, video_id))["thumbnail"].state == "archived"
        assert await live_downloads(stack, video_id) == []

    async def test_a_batch_checks_at_most_its_size_each_object_once_per_recheck_period(
        self, stack: ConsoleStack, database: Database
    ) -> None:
        video_id, _ = await archived_video(stack)
        context = await only_due(stack, database, video_id, batch=2)
        first = await audit.run_batch(context)
        second = await audit.run_batch(context)
        third = await audit.run_batch(context)
        assert (first.checked, second.checked, third.checked) == (2, 1, 0)
        assert first.clean and second.clean
        async with database.sessionmaker() as session:
            stamped = (await session.execute(select(Asset.audited_at).where(Asset.video_id == video_id))).scalars()
            assert all(moment is not None for moment in stamped)

    async def test_the_worker_audits_on_its_own_and_repairs_what_it_finds(
        self, stack: ConsoleStack, database: Database
    ) -> None:
        video_id, recorded = await archived_video(stack)
        raw_s3(stack).delete_object(Bucket=stack.settings.s3.bucket, Key=key_of(stack, video_id, "video"))
        context = await only_due(stack, database, video_id, batch=2)
        worker = Worker(context, worker_id="audit-test")
        running = asyncio.create_task(worker.run())
        try:
            for _ in range(200):  # the audit finds it, queues the repair, and the worker runs it
                downloads = [job for job in await jobs(stack, video_id) if job.variant == "video"]
                if [job.state for job in downloads] == ["succeeded", "succeeded"]:
                    break
                await asyncio.sleep(0.05)
        finally:
            worker.request_stop()
            await running
        assert await stack.storage.head(key_of(stack, video_id, "video")) is not None
        rows = await assets(stack, video_id)
        assert {variant: (row.state, row.sha256) for variant, row in rows.items()} == {
            variant: ("archived", recorded[variant]) for variant in VARIANTS
        }
        assert all(row.audited_at is not None for row in rows.values())
