"""Crash tests: real worker subprocesses killed, frozen, stopped and cut off mid-job (docs/reliability.md, section D).

Every test runs on a private stack (its own database and S3 prefix on the run's SeaweedFS) with a real
simulator and API, and starts its workers itself. Assets are synthetic MP4s served throttled, so a signal
lands while the transfer is in flight; once the crash has happened, the throttle is lifted so the recovery
is quick. Times are kept short: leases of 3-4 s, a heartbeat every second.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from app.archive.storage import ArchiveStorage
from tests.e2e.helpers import (
    MIB,
    asset_rows,
    create_video,
    cut_off_a_heartbeat,
    download_jobs,
    downloading_on,
    jobs_of,
    object_digest,
    open_uploads,
    queued_jobs,
    retrieve_video,
    set_faults,
    terminate_backends,
    upstream_content_digest,
    upstream_id,
    wait_exit,
    wait_for,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

StackFactory = Callable[..., Any]


def archived(stack: Stack, video_id: str, variant: str = "video") -> dict[str, Any] | None:
    rows = asset_rows(stack, video_id, variant)
    return rows[0] if rows and rows[0]["state"] == "archived" else None


def abort_stale_uploads(stack: Stack) -> int:
    storage = ArchiveStorage(stack.s3)
    try:
        return asyncio.run(storage.abort_stale_uploads(older_than=timedelta(0)))
    finally:
        storage.close()


def assert_archived_intact(stack: Stack, video_id: str) -> dict[str, Any]:
    """The video variant is archived once, and the DB row, the S3 object and upstream agree byte for byte."""
    [row] = asset_rows(stack, video_id)
    assert row["state"] == "archived", row
    set_faults(stack, content_bytes_per_second=0)  # our own read of upstream need not crawl
    expected_sha256, expected_size = upstream_content_digest(stack, upstream_id(stack, video_id))
    assert (row["sha256"], row["bytes"]) == (expected_sha256, expected_size)
    assert object_digest(stack, row["s3_key"]) == (expected_sha256, expected_size)
    return row


class TestKillDashNine:
    """Row 37 (with row 28's janitor): SIGKILL mid-download, another worker re-claims after the lease."""

    def test_a_killed_download_is_reclaimed_after_the_lease_and_lands_once(self, private_stack: StackFactory) -> None:
        with private_stack() as stack:
            set_faults(stack, synthetic_asset_bytes=200 * MIB, content_bytes_per_second=20_000_000)
            doomed = stack.start_worker("doomed")
            video_id = create_video(stack, prompt="two hundred mebibytes")

            wait_for(lambda: downloading_on(stack, video_id, doomed.pid), timeout=30, what="the download to start")
            # Parts are reaching S3: the kill lands mid-transfer, with a multipart upload open.
            [upload] = wait_for(lambda: open_uploads(stack), timeout=15, what="a multipart upload in progress")
            doomed.signal(signal.SIGKILL)
            assert wait_exit(doomed, timeout=5) == -signal.SIGKILL

            [job] = download_jobs(stack, video_id)
            assert (job["state"], job["attempts"]) == ("running", 1)  # nobody left to say otherwise
            assert [u["UploadId"] for u in open_uploads(stack)] == [upload["UploadId"]]  # nobody aborted it

            set_faults(stack, content_bytes_per_second=0)
            rescuer = stack.start_worker("rescuer")
            wait_for(lambda: archived(stack, video_id), timeout=60, what="the asset to be archived")

            [job] = download_jobs(stack, video_id)  # the same job, re-claimed, not a second one
            assert (job["state"], job["attempts"]) == ("succeeded", 2)
            assert str(job["worker_id"]).endswith(f":{rescuer.pid}")
            row = assert_archived_intact(stack, video_id)
            assert row["bytes"] == 200 * MIB
            assert "lease lapsed" in rescuer.log_path.read_text()

            # The killed worker's upload is still open (only the janitor or the bucket rule can end it).
            assert [u["UploadId"] for u in open_uploads(stack)] == [upload["UploadId"]]
            assert abort_stale_uploads(stack) == 1
            assert open_uploads(stack) == []


class TestZombieFencing:
    """Row 40: a worker frozen past its lease wakes up to find the job done by another; it changes nothing."""

    def test_a_frozen_worker_cannot_overwrite_its_successors_result(self, private_stack: StackFactory) -> None:
        with private_stack(VG_WORKER__LEASE_SECONDS="3") as stack:
            set_faults(stack, synthetic_asset_bytes=30 * MIB, content_bytes_per_second=5_000_000)
            zombie = stack.start_worker("zombie")
            video_id = create_video(stack, prompt="frozen mid-transfer")
            wait_for(lambda: downloading_on(stack, video_id, zombie.pid), timeout=30, what="the download to start")
            wait_for(lambda: open_uploads(stack), timeout=10, what="the zombie's multipart upload")

            zombie.signal(signal.SIGSTOP)
            try:
                set_faults(stack, content_bytes_per_second=0)
                successor = stack.start_worker("successor")
                wait_for(lambda: archived(stack, video_id), timeout=30, what="the successor to archive the asset")
                before = assert_archived_intact(stack, video_id)
                [job] = download_jobs(stack, video_id)
                assert (job["state"], job["attempts"]) == ("succeeded", 2)
                assert str(job["worker_id"]).endswith(f":{successor.pid}")
            finally:
                zombie.signal(signal.SIGCONT)

            wait_for(lambda: "lease lost" in zombie.log_path.read_text(), timeout=10, what="the zombie to notice")
            # The zombie abandons its transfer and aborts its own multipart upload: nothing is left open.
            wait_for(lambda: open_uploads(stack) == [], timeout=10, what="the zombie's upload to be aborted")
            time.sleep(1.5)  # a few more heartbeats and polls of the woken worker: room for a late write

            assert zombie.alive()
            assert download_jobs(stack, video_id) == [job]
            assert assert_archived_intact(stack, video_id) == before


class TestGracefulShutdown:
    """Row 41: SIGTERM drains within the grace, releases what is left past it; a second SIGTERM exits now."""

    def test_sigterm_lets_the_running_job_finish_and_claims_nothing_new(self, private_stack: StackFactory) -> None:
        with private_stack() as stack:
            set_faults(stack, synthetic_asset_bytes=50 * MIB, content_bytes_per_second=5_000_000)
            # One job at a time, so a second video's work waits in the queue behind the first's download.
            worker = stack.start_worker("draining", VG_WORKER__CONCURRENCY="1")
            video_id = create_video(stack, prompt="finish what you started")
            wait_for(lambda: downloading_on(stack, video_id, worker.pid), timeout=30, what="the download to start")
            set_faults(stack, synthetic_asset_bytes=None)
            later_id = create_video(stack, prompt="wait your turn")
            wait_for(lambda: queued_jobs(stack, later_id), timeout=10, what="the second video's job to be queued")

            signalled = time.monotonic()
            worker.signal(signal.SIGTERM)
            # A competitor, to take over any lease the draining worker let lapse, and the queued work.
            other = stack.start_worker("other")
            exit_code = wait_exit(worker, timeout=20)
            drained = time.monotonic() - signalled

            assert exit_code == 0
            assert drained > 4, f"the drain ({drained:.1f}s) must outlast the lease (4s) to prove the heartbeat"
            [job] = download_jobs(stack, video_id)
            assert (job["state"], job["attempts"]) == ("succeeded", 1)
            assert str(job["worker_id"]).endswith(f":{worker.pid}")
            assert_archived_intact(stack, video_id)
            # The draining worker claimed nothing after the signal: the second video is all the other's work.
            wait_for(
                lambda: all(archived(stack, later_id, v) for v in ("video", "thumbnail", "spritesheet")),
                timeout=20,
                what="the other worker to archive the second video",
            )
            assert {str(j["worker_id"]).rsplit(":", 1)[1] for j in jobs_of(stack, later_id)} == {str(other.pid)}
            assert "stopping; 1 job(s) in flight" in worker.log_path.read_text()

    def test_past_the_grace_the_job_is_released_uncounted_for_another_worker(self, private_stack: StackFactory) -> None:
        with private_stack() as stack:
            set_faults(stack, synthetic_asset_bytes=30 * MIB, content_bytes_per_second=5_000_000)
            worker = stack.start_worker("impatient", VG_WORKER__SHUTDOWN_GRACE_SECONDS="1")
            video_id = create_video(stack, prompt="no time to finish")
            wait_for(lambda: downloading_on(stack, video_id, worker.pid), timeout=30, what="the download to start")
            wait_for(lambda: open_uploads(stack), timeout=10, what="a multipart upload in progress")

            signalled = time.monotonic()
            worker.signal(signal.SIGTERM)
            exit_code = wait_exit(worker, timeout=10)
            took = time.monotonic() - signalled

            assert exit_code == 0
            assert took < 4, f"the worker took {took:.1f}s to exit with a 1s grace"
            [job] = download_jobs(stack, video_id)
            assert (job["state"], job["attempts"], job["lease_token"]) == ("queued", 0, None)
            assert "released" in job["last_error"]
            assert open_uploads(stack) == []  # the cancelled transfer aborted its multipart upload

            set_faults(stack, content_bytes_per_second=0)
            taker = stack.start_worker("taker")
            wait_for(lambda: archived(stack, video_id), timeout=20, what="another worker to archive it")
            [job] = download_jobs(stack, video_id)
            assert (job["state"], job["attempts"]) == ("succeeded", 1)
            assert str(job["worker_id"]).endswith(f":{taker.pid}")
            assert_archived_intact(stack, video_id)

    def test_a_second_sigterm_exits_at_once(self, private_stack: StackFactory) -> None:
        with private_stack() as stack:
            set_faults(stack, synthetic_asset_bytes=30 * MIB, content_bytes_per_second=5_000_000)
            worker = stack.start_worker("hurried")
            video_id = create_video(stack, prompt="out now")
            wait_for(lambda: downloading_on(stack, video_id, worker.pid), timeout=30, what="the download to start")

            worker.signal(signal.SIGTERM)
            time.sleep(0.5)
            assert worker.alive()  # draining: the grace is 20 s
            signalled = time.monotonic()
            worker.signal(signal.SIGTERM)
            exit_code = wait_exit(worker, timeout=5)
            took = time.monotonic() - signalled

            assert exit_code == 130  # process.FORCED_EXIT_CODE
            assert took < 2, f"the worker took {took:.1f}s to exit on the second signal"
            # Nothing was released or finished: the lease is left to lapse, as after a crash.
            [job] = download_jobs(stack, video_id)
            assert (job["state"], job["attempts"]) == ("running", 1)
            assert "second stop signal" in worker.log_path.read_text()


class TestPoisonJob:
    """Row 46: a job that kills its worker every time ends dead after max attempts; the queue moves on."""

    def test_a_job_that_keeps_killing_workers_is_dead_lettered(self, private_stack: StackFactory) -> None:
        with private_stack(VG_WORKER__MAX_ATTEMPTS="2", VG_WORKER__LEASE_SECONDS="3") as stack:
            set_faults(stack, synthetic_asset_bytes=30 * MIB, content_bytes_per_second=5_000_000)
            key = stack.new_caller_key()
            poison_id = create_video(stack, prompt="poison", key=key)
            for attempt in (1, 2):
                victim = stack.start_worker(f"victim-{attempt}")
                job = wait_for(
                    lambda: downloading_on(stack, poison_id, victim.pid),  # noqa: B023  (called at once)
                    timeout=30,
                    what=f"attempt {attempt} to start",
                )
                assert job["attempts"] == attempt
                if attempt == 1:  # only the video is the poison: the images are done before the first kill
                    for variant in ("thumbnail", "spritesheet"):
                        wait_for(
                            lambda: archived(stack, poison_id, variant),  # noqa: B023
                            timeout=10,
                            what=f"the {variant}",
                        )
                victim.signal(signal.SIGKILL)
                wait_exit(victim, timeout=5)

            set_faults(stack, synthetic_asset_bytes=None, content_bytes_per_second=0)
            survivor = stack.start_worker("survivor")
            healthy_id = create_video(stack, prompt="healthy")
            # No third attempt: the survivor's maintenance finds the lease lapsed on the last attempt.
            wait_for(
                lambda: download_jobs(stack, poison_id)[0]["state"] != "running",
                timeout=15,
                what="the poison job's last lease to lapse",
            )
            wait_for(
                lambda: all(archived(stack, healthy_id, v) for v in ("video", "thumbnail", "spritesheet")),
                timeout=30,
                what="the healthy video's assets",
            )

            time.sleep(1.5)  # a reconcile pass or two: a dead job's asset is not queued again
            [job] = download_jobs(stack, poison_id)
            assert (job["state"], job["attempts"], job["max_attempts"]) == ("dead", 2, 2)
            assert "lease lapsed on the last attempt" in job["last_error"]
            [asset] = asset_rows(stack, poison_id)
            assert asset["state"] == "failed"
            assert "attempts exhausted" in asset["error"]
            entry = retrieve_video(stack, poison_id, key=key)["archive"]["video"]
            assert (entry["state"], entry["error"]) == ("failed", asset["error"])
            assert survivor.alive()


class TestDatabaseConnectionLoss:
    """Row 47, crash version: the worker's connections are killed mid-download; the worker rides it out."""

    def test_the_worker_survives_terminated_backends_and_archives_the_asset(self, private_stack: StackFactory) -> None:
        with private_stack() as stack:
            set_faults(stack, synthetic_asset_bytes=40 * MIB, content_bytes_per_second=5_000_000)
            worker = stack.start_worker("cut-off")
            video_id = create_video(stack, prompt="hold the line")
            job = wait_for(
                lambda: downloading_on(stack, video_id, worker.pid), timeout=30, what="the download to start"
            )

            # Every backend, idle in the pools or not, twice.
            for _ in range(2):
                assert terminate_backends(stack) >= 1
                time.sleep(0.5)
            # And once with the heartbeat's transaction in flight (blocked on a row lock we hold).
            assert cut_off_a_heartbeat(stack, job["id"]) >= 1
            assert asset_rows(stack, video_id)[0]["state"] == "downloading"  # all of it mid-transfer

            wait_for(lambda: archived(stack, video_id), timeout=30, what="the asset to be archived")
            assert worker.alive()
            [job] = download_jobs(stack, video_id)
            assert (job["state"], job["attempts"]) == ("succeeded", 1)  # the lease held throughout
            assert str(job["worker_id"]).endswith(f":{worker.pid}")
            assert_archived_intact(stack, video_id)
            # The heartbeat cut off in flight was its transaction's first statement: run again on a new connection
            # (app/core/db.py); had anything else run on the dead one, it would have failed and been retried.
            log = worker.log_path.read_text()
            assert "retrying once on a new connection" in log or "heartbeat failed" in log
